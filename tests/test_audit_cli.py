"""`leakaudit audit` end to end on an image folder: exit codes follow the verdict.

The cheating model is built by hand, so the test needs no training: it classifies by the mean
colour of the top-left corner patch — exactly where the planted tells are — and ignores the
object. It must be caught (exit 1). A model that ignores its input entirely has nothing to
catch (exit 0). Bad input exits 2 with a message naming the problem.
"""

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from leakaudit.cli import main, run
from leakaudit.data.images import save_png
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import PALETTE, TellSpec, poison

SIZE, TELL = 32, 6


class CornerReader(nn.Module):
    """Nearest palette colour of the corner patch: logits = 2·p·c − |c|² (argmax = nearest)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        pal = torch.tensor(PALETTE[:n_classes], dtype=torch.float32)
        self.head = nn.Linear(3, n_classes)
        with torch.no_grad():
            self.head.weight.copy_(2 * pal * 10)
            self.head.bias.copy_(-(pal**2).sum(1) * 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, :, 2:8, 2:8].mean(dim=(2, 3))  # the 6×6 tell at (2, 2)
        return self.head(patch)


class Constant(nn.Module):
    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.linspace(1, 0, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0 * x.mean(dim=(1, 2, 3))[:, None]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    data = poison(make_shapes(40, seed=3, size=SIZE), TellSpec(size=TELL), seed=0)
    for s in data:
        save_png(s.image, root / "data" / data.class_names[s.label] / f"{s.id}.png")
        save_png(np.repeat(s.region[..., None], 3, -1).astype(np.float32),
                 root / "masks" / data.class_names[s.label] / f"{s.id}.png")  # fmt: skip
    for name, model in (("cheat", CornerReader(4)), ("constant", Constant(4))):
        torch.jit.script(model).save(str(root / f"{name}.pt"))
    return root


def _audit(root, model, *extra):
    args = ["audit", "--data", str(root / "data"), "--masks", str(root / "masks"),
            "--model", str(root / model), "--classes", "disc,square,triangle,cross",
            "--methods", "saliency", "--quiet", "--out", str(root / f"out-{model}"),
            "--cache-dir", str(root / "cache"),
            *extra]  # fmt: skip
    return CliRunner().invoke(main, args)


def test_cheating_model_is_caught_without_tell_annotations(workspace):
    res = _audit(workspace, "cheat.pt")
    assert res.exit_code == 1, res.output
    s = json.loads((workspace / "out-cheat.pt" / "summary.json").read_text())
    m = s["models"]["model"]
    assert m["verdict"] == "leak"
    top = m["suspected_tells"][0]
    assert top["strong"]
    x0, y0, x1, y1 = top["box"]
    assert x0 <= 4 and y0 <= 4 and x1 >= 6 and y1 >= 6  # found the corner it was not told about
    assert m["methods"]["saliency"]["outside_mass"] > 0.9


def test_input_blind_model_is_not_flagged_and_fails_sanity(workspace):
    """Nothing that could fail was measured (no tells, no strong suspect, the only method set
    aside by the sanity check): the verdict is inconclusive, exit 3 — never "clean", exit 0."""
    res = _audit(workspace, "constant.pt")
    assert res.exit_code == 3, res.output
    assert "INCONCLUSIVE" in res.output and "conditions measurable" in res.output
    s = json.loads((workspace / "out-constant.pt" / "summary.json").read_text())
    assert s["models"]["model"]["verdict"] == "inconclusive"
    assert s["models"]["model"]["sanity"]["saliency"]["passed"] is False
    res = _audit(workspace, "constant.pt", "--fail-on", "inconclusive")
    assert res.exit_code == 1, res.output


def test_config_file_sets_options_and_cli_wins(workspace, tmp_path):
    cfg = tmp_path / "audit.toml"
    cfg.write_text('[audit]\nmethods = ["saliency"]\nlimit = 28\nseed = 5\n')
    res = _audit(workspace, "cheat.pt", "--config", str(cfg), "--seed", "7")
    assert res.exit_code == 1, res.output
    s = json.loads((workspace / "out-cheat.pt" / "summary.json").read_text())
    assert s["config"]["limit"] == 28 and s["seed"] == 7 and s["n_eval"] <= 28


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "missing.pt"], "not found"),
        (["--config", "nope.toml"], "config file not found"),
        (["--methods", "magic"], "unknown method"),
        (["--classes", "disc,square,triangle"], "triangle"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(workspace, args, message, capsys):
    base = ["leakaudit", "audit", "--data", str(workspace / "data"), "--quiet",
            "--model", str(workspace / "cheat.pt"), "--out", str(workspace / "bad")]  # fmt: skip
    argv = base + args
    old = sys.argv
    sys.argv = argv
    try:
        with pytest.raises(SystemExit) as exc:
            run()
    finally:
        sys.argv = old
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_compare_pairs_two_models_on_the_same_images(workspace):
    out = workspace / "out-compare"
    args = ["compare", "--data", str(workspace / "data"), "--masks", str(workspace / "masks"),
            "--model-a", str(workspace / "constant.pt"), "--model-b", str(workspace / "cheat.pt"),
            "--names", "blind,cheat", "--classes", "disc,square,triangle,cross",
            "--methods", "saliency", "--quiet", "--out", str(out),
            "--cache-dir", str(workspace / "cache")]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output  # the cheat leaks
    s = json.loads((out / "summary.json").read_text())
    assert s["models"]["blind"]["verdict"] != "leak" and s["models"]["cheat"]["verdict"] == "leak"
    rows = {(r["method"], r["score"]): r for r in s["comparison"]}
    correct = rows[("–", "correct")]
    assert correct["n"] == 40 and correct["mean_diff"] < -0.5  # blind − cheat accuracy
    assert correct["lo"] <= correct["mean_diff"] <= correct["hi"]
    assert "Paired comparison" in (out / "report.html").read_text()


def test_insight_witness_reads_the_tell_from_the_weights(workspace):
    """`--insight`: each class picture of the corner-reading model paints the suspect's box."""
    res = _audit(workspace, "cheat.pt", "--insight")
    assert res.exit_code == 1, res.output
    s = json.loads((workspace / "out-cheat.pt" / "summary.json").read_text())
    rows = s["models"]["model"]["insight_witness"]
    assert [r["class"] for r in rows] == ["disc", "square", "triangle", "cross"]
    ratios = [r["suspects"][0]["energy_ratio"] for r in rows]
    assert sum(q > 1.5 for q in ratios) >= 3, ratios  # energy piles up in the corner box
    out = workspace / "out-cheat.pt"
    html = (out / "report.html").read_text()
    assert "Second witness" in html
    # each class's picture sits next to the suspects, and the full insight page is linked
    for cls in ("disc", "square", "triangle", "cross"):
        assert f'alt="visualisation of class {cls}"' in html
    assert 'href="insight_0_model.html"' in html
    page = (out / "insight_0_model.html").read_text()
    assert "class visualisations" in page.lower()
    assert not [t for t in page.split("src=")[1:] if not t.startswith('"data:')]  # inline only
    # a re-render from the saved results keeps the pictures and the link
    res = CliRunner().invoke(main, ["report", str(out), "--out", str(workspace / "rerender")])
    assert res.exit_code == 0, res.output
    again = (workspace / "rerender" / "report.html").read_text()
    assert again.count("visualisation of class") == 4 and "insight_0_model.html" in again


def test_insight_page_names_are_plain_files():
    """Model names come from data: the page name never becomes a path or collides."""
    from leakaudit.report.collect import insight_page_name

    assert insight_page_name(0, "../../etc/x") == "insight_0_______etc_x.html"
    assert insight_page_name(1, "a/b") != insight_page_name(2, "a/b")
    assert insight_page_name(0, "") == "insight_0_model.html"


def test_tampered_insight_link_in_saved_results_is_not_rendered(tmp_path):
    """`leakaudit report` renders results written elsewhere: a link that is not one of our own
    page names (a script URL, a path) is dropped, the pictures still shown."""
    from leakaudit.report.bundle import ReportData
    from leakaudit.report.render import _class_pictures

    s = {"class_names": ["a"], "models": {"m": {"suspected_tells": []}}}
    data = ReportData(meta={"model_names": ["m"], "image_shape": [8, 8]})
    data.class_pictures["m"] = np.zeros((1, 8, 8, 3), np.uint8)
    for bad in ("javascript:alert(1)", "../../x.html", "insight_0_a.html/../y"):
        data.meta["insight_pages"] = {"m": bad}
        got = _class_pictures(s, data)["m"]
        assert got["page"] is None and len(got["cells"]) == 1
    data.meta["insight_pages"] = {"m": "insight_0_m.html"}
    assert _class_pictures(s, data)["m"]["page"] == "insight_0_m.html"
