"""Hardening v3: every config value and option is checked before any data is read, in the
config's words; threshold lines stay in their range; a hostile arch_kwargs is refused on the meta
device; --budget is one number and one unit; an unreachable Ray cluster is one line; a normal
run prints no RuntimeWarning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from leakaudit.auditing.budget import parse_duration
from leakaudit.auditing.pipeline import AuditOptions
from leakaudit.auditing.verdict import Thresholds, build_conditions, verdict
from leakaudit.cli import run
from leakaudit.data.images import save_png
from leakaudit.data.synthetic import make_shapes
from leakaudit.errors import ConfigError, EngineError, ModelLoadError
from leakaudit.models.arch import MAX_PARAMS_ENV, construct, meta_build
from leakaudit.models.load import load_model, read_checkpoint_meta
from leakaudit.models.zoo import SmallCNN

BASE = {"data": "tests", "format": "imagefolder", "model": "m.pt"}


def _options(**values) -> AuditOptions:
    return AuditOptions.merged(None, {**BASE, **values})


def _config_error(tmp_path: Path, toml: str) -> str:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        AuditOptions.merged(str(cfg), dict(BASE))
    return str(e.value)


# ---------------------------------------------------------------- 1. types, in the config's words


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("thresholds = {x = 1}", "unknown threshold(s): ['x']"),
        (
            "thresholds = {tell_top_rate = {a = 1}}",
            "thresholds.tell_top_rate: expected [warn, fail]",
        ),
        ("thresholds = [1]", "thresholds: expected a table of kind = [warn, fail]"),
        ("thresholds = {tell_top_rate = [0.1]}", "thresholds.tell_top_rate: expected [warn, fail]"),
        ('thresholds = {tell_top_rate = ["a", 1]}', "tell_top_rate: warn line must be a number"),
        ("thresholds = {tell_top_rate = [nan, 0.5]}", "warn line must be a finite number, got nan"),
        ("arch_kwargs = 5", "arch_kwargs: expected a table of name = value, got int 5"),
        ("arch_kwargs = {width = nan}", "arch_kwargs.width: expected a finite number, got nan"),
        ("lime_samples = nan", "lime_samples: expected a whole number, got nan"),
        ("margin = nan", "margin: expected a finite number, got nan"),
        ("margin = inf", "margin: expected a finite number, got inf"),
        ("margin = -inf", "margin: expected a finite number, got -inf"),
        ("margin = [0.5]", "margin: expected a finite number, got list [0.5]"),
        ("margin = -0.5", "margin must be at least 0"),
        ("window = 0.5", "window must be at least 1"),
        ("test_fraction = nan", "test_fraction: expected a finite number, got nan"),
        ("mean = [nan, 0.5, 0.5]", "mean[0]: expected a finite number, got nan"),
        ("std = [0.5, 0.5]", "std: expected 3 numbers"),
        ("std = [0.5, 0.0, 0.5]", "std: every value must be > 0"),
        ('classes = ["a", 1]', "classes[1]: expected a string, got int 1"),
        ('methods = "saliency"', "methods: expected a list of strings"),
        ('label_rule = "best"', "label_rule: expected one of unique, error"),
        ('lime_baseline = "grey"', "lime_baseline: expected one of blur"),
        ('channel_order = "rgb"', "channel_order: expected one of RGB, BGR"),
        ('mode = "tile"', "mode: expected one of image, crop"),
        ('limit = "ten"', "limit: expected a whole number, got str 'ten'"),
        ("sanity = 1", "sanity: expected true or false, got int 1"),
    ],
)
def test_config_values_are_checked_in_the_configs_words(tmp_path, toml, message) -> None:
    text = _config_error(tmp_path, toml)
    assert message in text, text
    for python_words in ("TypeError", "expected float", "expected dict", "expected int"):
        assert python_words not in text, text


def test_python_api_options_are_checked_like_the_config() -> None:
    """``leakaudit.audit(...)`` builds AuditOptions itself and only calls validate()."""
    from leakaudit.api import _options as api_options

    for kwargs, message in (
        ({"lime_samples": float("nan")}, "lime_samples: expected a whole number"),
        ({"margin": float("inf")}, "margin: expected a finite number, got inf"),
        ({"arch_kwargs": {1: 2}}, "arch_kwargs: expected a table of name = value"),
        ({"budget": "5mh"}, "budget: cannot read '5mh'"),
    ):
        with pytest.raises(ConfigError) as e:
            api_options(["saliency"], 0, None, None, kwargs)
        assert message in str(e.value), e.value
    with pytest.raises(ConfigError, match=r"thresholds\.tell_top_rate: warn line"):
        api_options(["saliency"], 0, {"tell_top_rate": [-0.1, 0.5]}, None, {})


def test_cli_flags_refuse_nan_and_exit_2_before_reading(tmp_path, capsys) -> None:
    never = tmp_path / "never-read"  # does not exist: any read would be a DatasetError
    for extra, message in (
        (["--margin", "nan"], "margin: expected a finite number, got nan"),
        (["--mean", "nan,0,0"], "finite"),
        (["--budget", "1.2.3m"], "budget: cannot read '1.2.3m'"),
    ):
        argv = ["audit", "--data", str(never), "--format", "imagefolder", "--model", "m.pt",
                "--out", str(tmp_path / "o"), "--quiet", *extra]  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            run(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and "Traceback" not in err, err


# ---------------------------------------------------------------- 2. threshold lines


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ({"ablation_retained": [0.5, -0.5]}, "thresholds.ablation_retained: fail line must be ≥ 0"),
        ({"ablation_retained": [-0.1, 1.0]}, "thresholds.ablation_retained: warn line must be ≥ 0"),
        ({"tell_top_rate": [0.2, 1.5]}, "tell_top_rate: fail line must be between 0 and 1"),
        ({"swap_follow_rate": [0.6, 0.5]}, "warn ≤ fail"),
        ({"removal_accuracy_drop": [0.1, float("nan")]}, "fail line must be a finite number"),
        ({"tell_mass_excess": [float("inf"), float("inf")]}, "warn line must be a finite"),
        ({"removal_class_drop": [0.1, float("-inf")]}, "fail line must be a finite number"),
        ({"removal_class_drop": [True, 0.5]}, "warn line must be a number, got bool True"),
    ],
)
def test_threshold_lines_stay_in_their_range(lines, message) -> None:
    with pytest.raises(ValueError) as e:
        Thresholds.from_dict(lines)
    assert message in str(e.value), e.value
    with pytest.raises(ConfigError) as e2:
        _options(thresholds=lines)
    assert message in str(e2.value)


def test_fail_inf_keeps_a_condition_warn_only() -> None:
    t = Thresholds.from_dict({"tell_top_rate": [0.25, float("inf")], "ablation_retained": [2, 3]})
    assert t["tell_top_rate"] == (0.25, float("inf")) and t["ablation_retained"] == (2.0, 3.0)


def test_negative_line_cannot_turn_a_warn_only_check_into_leak() -> None:
    """On main, ablation_retained = [-1, -0.5] made a model that keeps nothing without its
    object (retained 0) FAIL, and the verdict LEAK; the default lines only warn."""
    conds = build_conditions({}, {}, float("nan"), Thresholds(), ablation={"retained": 0.0})
    assert [c.status for c in conds] == ["PASS"] and verdict(conds) != "leak"
    with pytest.raises(ValueError, match="ablation_retained: warn line must be ≥ 0"):
        Thresholds.from_dict({"ablation_retained": [-1, -0.5]})


# ---------------------------------------------------------------- 3. hostile arch_kwargs


def _checkpoint(path: Path, **meta) -> Path:
    state = SmallCNN(3, width=4).state_dict()
    torch.save({"format": "leakaudit-checkpoint-1", "state_dict": state, **meta}, path)
    return path


@pytest.fixture
def no_big_allocation(monkeypatch):
    """Records (and refuses) any real, not meta, build of a conv with ≥ 1e6 channels: on main
    the meta build overflowed and the loader then tried the real one (108 GB)."""
    real_init, attempts = torch.nn.Conv2d.__init__, []

    def guarded(self, c_in, c_out, *a, **k):
        if torch.get_default_device().type != "meta" and not c_out < 10**6:
            attempts.append(c_out)
            raise MemoryError("test: refused a huge real allocation")
        real_init(self, c_in, c_out, *a, **k)

    monkeypatch.setattr(torch.nn.Conv2d, "__init__", guarded)
    yield
    assert not attempts, f"a real {attempts[0]}-channel conv was attempted"


def test_huge_width_in_metadata_is_refused_before_allocating(tmp_path, no_big_allocation):
    p = _checkpoint(tmp_path / "m.pt", arch="small_cnn", arch_kwargs={"width": 10**9},
                    classes=["a", "b", "c"])  # fmt: skip
    for call in (lambda: read_checkpoint_meta(p), lambda: load_model(p)):
        with pytest.raises(ModelLoadError) as e:
            call()
        text = str(e.value)
        assert "arch_kwargs" in text and MAX_PARAMS_ENV in text and str(p) in text, text


@pytest.mark.parametrize(
    ("width", "shown"),
    [(1e9, "1000000000.0"), (4.5, "4.5"), (-4, "int -4"), (True, "bool True"), ("8", "str '8'")],
)
def test_integer_kwargs_must_be_whole_numbers(tmp_path, no_big_allocation, width, shown) -> None:
    p = _checkpoint(tmp_path / "m.pt", arch="small_cnn", classes=["a", "b", "c"])
    with pytest.raises(ModelLoadError) as e:
        load_model(p, "small_cnn", {"width": width})
    text = str(e.value)
    assert "arch_kwargs.width" in text and "whole number" in text and shown in text, text


def test_config_arch_kwargs_checked_before_reading_data(no_big_allocation) -> None:
    for kw, message in (({"width": 10**9}, MAX_PARAMS_ENV), ({"width": 1e9}, "arch_kwargs.width")):
        with pytest.raises(ConfigError, match=message):
            _options(data="/nonexistent/never", arch="small_cnn", arch_kwargs=kw)


def test_parameter_cap_is_an_env_override(monkeypatch) -> None:
    assert sum(p.numel() for p in meta_build(SmallCNN, {"width": 4}, 3).parameters()) < 10_000
    monkeypatch.setenv(MAX_PARAMS_ENV, "1000")
    with pytest.raises(ModelLoadError, match=f"over the cap of 1,000 .*{MAX_PARAMS_ENV}"):
        meta_build(SmallCNN, {"width": 4}, 3)
    monkeypatch.setenv(MAX_PARAMS_ENV, "lots")
    with pytest.raises(ModelLoadError, match=MAX_PARAMS_ENV):
        meta_build(SmallCNN, {"width": 4}, 3)


def test_user_factory_that_cannot_build_on_meta_still_loads(tmp_path) -> None:
    def numpy_init(n_classes: int = 3, hidden: int = 4) -> torch.nn.Module:
        if torch.get_default_device().type == "meta":
            raise RuntimeError("needs real tensors")
        return SmallCNN(n_classes, width=hidden)

    assert meta_build(numpy_init, {"hidden": 4}, 3) is None
    assert isinstance(construct(numpy_init, {"hidden": 4}, 3), torch.nn.Module)


# ---------------------------------------------------------------- 4. --budget


@pytest.mark.parametrize(
    "bad", ["1.2.3m", "5mh", "m", "1m1h", "1m30m", "5 x", "nan", "inf", "1e3s"]
)
def test_budget_is_one_number_and_one_unit(bad) -> None:
    with pytest.raises(ConfigError) as e:
        parse_duration(bad)
    assert repr(bad) in str(e.value) and "15m" in str(e.value)


def test_budget_forms_that_stay_accepted() -> None:
    for text, seconds in (("15m", 900), ("90s", 90), ("2.5h", 9000), ("1h30m", 5400), ("90", 90),
                          ("10 min", 600), ("1 hour", 3600), ("30 sec", 30)):  # fmt: skip
        assert parse_duration(text) == seconds
    for bad in (float("nan"), float("inf"), 0, -1, True):
        with pytest.raises(ConfigError, match="budget"):
            parse_duration(bad)


# ---------------------------------------------------------------- 5. Ray: one line


def test_unreachable_ray_prints_only_the_error(monkeypatch, capfd) -> None:
    pytest.importorskip("ray")
    from leakaudit.engines import ray_engine

    class FakeRay:
        @staticmethod
        def is_initialized() -> bool:
            return False

        @staticmethod
        def init(**kwargs) -> None:
            for _ in range(20):  # what Ray's C++ core writes per retry, straight to fd 2
                os.write(2, b"[W rpc_client.h:153] Failed to connect to GCS within 5 seconds.\n")
            raise ConnectionError("could not connect to the GCS\nmore detail")

    monkeypatch.setattr(ray_engine, "import_ray", lambda: FakeRay)
    with pytest.raises(EngineError) as e:
        ray_engine.connect("auto")
    assert "\n" not in str(e.value) and "cannot reach a Ray cluster" in str(e.value)
    err = capfd.readouterr().err
    assert "Failed to connect" not in err, err
    os.write(2, b"after\n")  # stderr is back
    assert "after" in capfd.readouterr().err


# ---------------------------------------------------------------- 6. no RuntimeWarning


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("v3")
    data = make_shapes(8, seed=1, size=24)
    for s in data:
        save_png(s.image, root / "data" / data.class_names[s.label] / f"{s.id}.png")
    torch.manual_seed(0)
    torch.jit.script(SmallCNN(len(data.class_names), width=4).eval()).save(str(root / "m.pt"))
    return root


def test_small_audit_without_masks_prints_no_runtime_warning(shapes_dir, tmp_path) -> None:
    """No masks: every outside-object share is NaN, and the report's typical image took the
    mean of empty columns ("Mean of empty slice" on stderr)."""
    argv = [sys.executable, "-W", "error::RuntimeWarning", "-m", "leakaudit", "audit",
            "--data", str(shapes_dir / "data"), "--model", str(shapes_dir / "m.pt"),
            "--methods", "saliency", "--quiet", "--no-cache", "--out", str(tmp_path / "o"),
            "--debug"]  # fmt: skip
    env = {**os.environ, "LEAKAUDIT_THREADS": "1", "PYTHONWARNINGS": "error::RuntimeWarning"}
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode in (0, 1, 3), res.stderr[-3000:]
    assert "RuntimeWarning" not in res.stderr, res.stderr[-3000:]
    assert (tmp_path / "o" / "summary.json").exists()
