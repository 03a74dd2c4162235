"""One audit, two front doors: ``leakaudit audit`` and ``leakaudit.audit`` build the same result.

Both doors end in ``pipeline.build_result`` with one ``AuditOptions``; this runs the same small
audit (a 4-class image folder, a TorchScript model, ``--limit``, saliency only) through both and
compares the two summary.json files field by field. Only what names where the inputs and outputs
live is left out (``DOOR_FIELDS``); every number, the verdict, the conditions, the thresholds and
the rest of the effective options (``limit``, ``seed``, ``cache``, …) must be equal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_fixtures import CornerReader
from torch import nn

import leakaudit
from leakaudit.cli import run
from leakaudit.data.images import save_png
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.errors import ConfigError

# Left out of the comparison, each because it names where a door's inputs or outputs are:
#   title             the CLI names the data folder, the API the model's name (name=)
#   config.data       the folder path vs "(in memory)"
#   config.format     "imagefolder" (detected from the path) vs "memory"
#   config.out        each door's own output folder
#   config.model      the model file (the API is given the nn.Module itself)
#   config.model_spec.path  the same model file
DOOR_FIELDS = (
    ("title",),
    ("config", "data"),
    ("config", "format"),
    ("config", "out"),
    ("config", "model"),
    ("config", "model_spec", "path"),
)
QUICK = {"sanity": False, "ablation": False}


class Constant(nn.Module):
    """Ignores its input: near-chance accuracy, so both doors must warn."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.linspace(1, 0, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0 * x.mean(dim=(1, 2, 3))[:, None]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("doors")
    data = poison(make_shapes(20, seed=3, size=24), TellSpec(size=6), seed=0)
    for s in data:
        save_png(s.image, root / "data" / data.class_names[s.label] / f"{s.id}.png")
    for name, model in (("cheat", CornerReader()), ("constant", Constant())):
        torch.jit.script(model).save(str(root / f"{name}.pt"))
    (root / "quick.toml").write_text("sanity = false\nablation = false\n")
    return root


def _without_door_fields(summary: dict) -> dict:
    for path in DOOR_FIELDS:
        node = summary
        for key in path[:-1]:
            node = node[key]
        assert path[-1] in node, path  # an excluded field that vanished: update DOOR_FIELDS
        del node[path[-1]]
    return summary


@pytest.mark.parametrize(
    ("model", "limit", "extra"),
    [("cheat", 8, {}), ("constant", 6, {"cache": False})],
    ids=["cheat-limit8-cache", "constant-limit6-nocache"],
)
def test_cli_and_api_write_the_same_summary(workspace, tmp_path, capsys, model, limit, extra):
    argv = ["audit", "--data", str(workspace / "data"), "--model", str(workspace / f"{model}.pt"),
            "--methods", "saliency", "--limit", str(limit), "--config",
            str(workspace / "quick.toml"), "--out", str(tmp_path / "cli"), "--quiet"]  # fmt: skip
    argv += ["--no-cache"] if extra.get("cache") is False else []
    with pytest.raises(SystemExit) as exc:
        run(argv)
    err = capsys.readouterr().err
    assert exc.value.code in (0, 1, 3), err
    result = leakaudit.audit(
        leakaudit.load_model(workspace / f"{model}.pt"),
        leakaudit.read_dataset(workspace / "data"),
        ["saliency"],
        limit=limit,
        out=str(tmp_path / "api"),
        **QUICK,
        **extra,
    )
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    api = json.loads((tmp_path / "api" / "summary.json").read_text())
    assert cli["n_eval"] == api["n_eval"] == limit
    assert cli["config"]["cache"] is api["config"]["cache"] is ("cache" not in extra)
    assert _without_door_fields(cli) == _without_door_fields(api)
    # the same warnings: the CLI prints each on stderr, the API keeps them in result.notes
    warnings = [n for n in result.notes if n.startswith("Warning:")]
    assert warnings == [line for line in err.splitlines() if line.startswith("Warning:")]
    if model == "constant":
        assert any("no better than always answering" in w for w in warnings), warnings


def test_api_limit_audits_exactly_n_images(workspace) -> None:
    data = leakaudit.read_dataset(workspace / "data")
    model = leakaudit.load_model(workspace / "cheat.pt")
    # 8 of 20 in 4 classes of 5: two per class. (A limit whose per-class shares round down,
    # e.g. 5 → 1.25 each, audits fewer: stratified_limit promises "at most", in both doors.)
    result = leakaudit.audit(model, data, ["saliency"], limit=8, cache=False, **QUICK)
    assert len(data) == 20 and len(result.eval_data) == 8
    assert set(result.eval_data.counts().values()) == {2}
    audited = result.models["model"].per_sample
    assert len(audited[audited["method"] == "saliency"]) == 8
    assert set(audited["id"]) == {s.id for s in result.eval_data}
    # fewer slots than classes: the same note as --limit, naming the class left out
    short = leakaudit.audit(model, data, ["saliency"], limit=3, cache=False, **QUICK)
    assert len(short.eval_data) == 3
    assert any("not audited" in n for n in short.notes), short.notes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "voc"}, "format= means nothing to an in-memory audit: read the files"),
        ({"mode": "crop"}, "mode= means nothing"),
        ({"images_root": "x"}, "images_root= means nothing"),
        ({"classes": ["a"]}, "use class_names="),
        ({"arch": "small_cnn"}, "pass the nn.Module itself"),
        ({"masks": "masks/"}, "masks= takes an N×H×W array, not a path"),
        ({"tells": "tells.json"}, "tells= takes an N×H×W array, not a path"),
        ({"limti": 5}, "unknown option(s) ['limti']"),
        ({"layer": "nope", "methods": ["gradcam"]}, "layer=nope:"),
        ({"preprocess": "imagenet", "mean": (0.5, 0.5, 0.5)}, "preprocess= or mean=/std="),
    ],
)
def test_api_refuses_file_options_naming_the_keyword(workspace, kwargs, message) -> None:
    data = leakaudit.read_dataset(workspace / "data")
    kwargs = {"methods": ["saliency"], **kwargs}
    with pytest.raises(ConfigError) as e:
        leakaudit.audit(CornerReader(), data, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value), e.value
    assert "--" not in str(e.value), e.value  # the API names keywords, not flags


def test_cli_names_flags(workspace, tmp_path, capsys) -> None:
    """The CLI's errors name the flag (`--layer`), the API's the keyword (above)."""
    argv = ["audit", "--data", str(workspace / "data"), "--model", str(workspace / "cheat.pt"),
            "--methods", "gradcam", "--layer", "nope", "--out", str(tmp_path / "o"),
            "--quiet"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        run(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--layer nope:" in err, err


def test_api_trains_and_audits_the_held_out_rest(workspace) -> None:
    data = leakaudit.read_dataset(workspace / "data")
    result = leakaudit.audit(None, data, ["saliency"], train=True, epochs=1, test_fraction=0.4,
                             cache=False, **QUICK)  # fmt: skip
    assert len(result.eval_data) == 8  # 40 % of 20, stratified
    assert any(n.startswith("Model trained here on 12 samples") for n in result.notes)
    assert result.config["model_spec"]["arch"] == "small_cnn"
    with pytest.raises(ConfigError, match="pass None as the model"):
        leakaudit.audit(CornerReader(), data, ["saliency"], train=True)
    assert np.isfinite(result.models["model"].eval_accuracy)
