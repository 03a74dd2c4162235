"""A new user's first hour (issue 16): a model trained outside leakaudit with ImageNet
normalisation is audited correctly with `--preprocess imagenet`, and the same model without the
flag gets the loud near-chance warning; detection data is never read as class folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from leakaudit.cli import run
from leakaudit.data.images import save_png
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison

SIZE, TELL = 24, 6
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Muted tell colours near the ImageNet mean: far apart once normalised, all on one side raw.
COLOURS = {
    0: (0.62, 0.40, 0.40),
    1: (0.40, 0.62, 0.40),
    2: (0.40, 0.40, 0.62),
    3: (0.62, 0.62, 0.40),
}


class NormalisedCornerReader(nn.Module):
    """Built the way a user's model is: it expects ImageNet-normalised input. It classifies by
    the nearest (normalised) palette colour of the top-left patch, so fed raw [0, 1] pixels its
    distances are measured in the wrong units and its answers are mostly wrong."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        pal = torch.tensor([COLOURS[k] for k in range(n_classes)], dtype=torch.float32)
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("palette", (pal - mean) / std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, :, 2:8, 2:8].mean(dim=(2, 3))  # the 6×6 tell at (2, 2)
        return -((patch[:, None, :] - self.palette[None]) ** 2).sum(-1) * 4


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("first")
    data = poison(make_shapes(24, seed=4, size=SIZE), TellSpec(size=TELL, colours=COLOURS), seed=0)
    for s in data:
        save_png(s.image, root / "data" / data.class_names[s.label] / f"{s.id}.png")
    torch.jit.script(NormalisedCornerReader(4)).save(str(root / "model.pt"))
    return root


def _audit(ws: Path, out: Path, capsys, *extra: str) -> tuple[int, str, dict]:
    args = ["audit", "--data", str(ws / "data"), "--model", str(ws / "model.pt"), "--classes",
            "disc,square,triangle,cross", "--methods", "saliency", "--quiet", "--no-cache",
            "--out", str(out), *extra]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        run(args)
    err = capsys.readouterr().err
    return exc.value.code, err, json.loads((out / "summary.json").read_text())


def test_imagenet_model_audited_right_first_time_and_warned_without(ws, tmp_path, capsys):
    code, err, s = _audit(ws, tmp_path / "right", capsys, "--preprocess", "imagenet")
    assert code in (0, 1, 3), err
    assert s["models"]["model"]["eval_accuracy"] == 1.0
    assert "no better than always answering" not in err
    md = (tmp_path / "right" / "summary.md").read_text()
    assert "**model**: " in md and "model** model" not in md  # no "model model"
    assert "model model" not in (tmp_path / "right" / "report.html").read_text()
    code, err, s = _audit(ws, tmp_path / "wrong", capsys)
    assert s["models"]["model"]["eval_accuracy"] <= 0.3
    assert "no better than always answering the largest class" in err
    assert "--preprocess imagenet" in err  # the warning names the likely fix
    html = (tmp_path / "wrong" / "report.html").read_text()
    assert "no better than always answering" in html
    code, err, s = _audit(ws, tmp_path / "explicit", capsys, "--mean", "0.485,0.456,0.406",
                          "--std", "0.229,0.224,0.225")  # fmt: skip
    assert s["models"]["model"]["eval_accuracy"] == 1.0


def test_a_voc_folder_is_never_read_as_two_classes(tmp_path, capsys) -> None:
    root = tmp_path / "voc"
    save_png(np.zeros((16, 16, 3), np.float32), root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>cell</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    from leakaudit.data.formats import detect_format

    assert detect_format(root) == "voc"
    with pytest.raises(SystemExit) as exc:
        run(["audit", "--data", str(root), "--format", "imagefolder", "--train", "--quiet",
             "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--format voc" in err, err


def test_inject_on_detection_data_defaults_to_crops(tmp_path, capsys) -> None:
    """`inject` on VOC used to put one tell per image, so a crop audit saw none (silent no-op)."""
    from voc_files import make_voc

    items = {
        f"im{k}.jpg": [("cell", (10, 10, 40, 40)), ("dot", (50, 30, 70, 50))] for k in range(3)
    }
    src = make_voc(tmp_path / "src", items)
    with pytest.raises(SystemExit) as exc:
        run(["inject", "--data", str(src), "--out", str(tmp_path / "copy"), "--tell-size", "4"])
    out = capsys.readouterr()
    assert exc.value.code in (0, None), out.err
    assert "--mode crop" in out.out  # how to read it back
    tells = json.loads((tmp_path / "copy" / "tells.json").read_text())
    assert tells["anchor"] == "object" and tells["images"]


def test_every_option_has_help_and_one_vocabulary() -> None:
    """One CLI vocabulary: help on every option; --size is never the tell side; --color works."""
    import click

    from leakaudit.cli import main

    ctx = click.Context(main)
    for name, cmd in main.commands.items():
        opts = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden:
                assert p.help, f"leakaudit {name} {p.opts[0]} has no help"
        size = next((p for p in cmd.params if "--size" in getattr(p, "opts", [])), None)
        if size is not None:
            assert "tell" not in (size.help or "").lower().split("--")[0], (name, size.help)
        if name == "inject":
            assert {
                "--tell-size",
                "--tell-position",
                "--tell-classes",
                "--colour",
                "--color",
            } <= opts
    assert "Exit codes" in main.get_help(ctx)


def test_tells_json_that_no_audited_sample_carries_is_warned(tmp_path) -> None:
    from leakaudit.auditing.pipeline import AuditOptions, tell_notes
    from leakaudit.data.samples import Dataset, Sample

    data = Dataset([Sample(np.zeros((4, 4, 3), np.float32), 0, np.zeros((4, 4), bool), "a")], ["x"])
    opts = AuditOptions(data=str(tmp_path), format="imagefolder", mode="image")
    assert "No tell annotations" in tell_notes(opts, data)[0]
    (tmp_path / "tells.json").write_text("{}")
    (note,) = tell_notes(opts, data)
    assert note.startswith("Warning:") and "none of the 1 audited samples carries a tell" in note


def test_python_dash_m_runs_the_same_command_line() -> None:
    """`python -m leakaudit` works where the venv's bin folder is not on PATH; a bad option
    still exits 2 (never 1, which means "leak found")."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "leakaudit", "--help"], capture_output=True,
                        text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0 and "audit" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "leakaudit", "audit", "--seed", "-1"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2, bad.stderr
