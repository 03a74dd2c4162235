"""The insight witness (known answers), the HTML page (escaped, self-contained) and the CLI."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from leakaudit.cli import run
from leakaudit.insight.page import PageOptions, build_page, render_page
from leakaudit.insight.witness import class_witness, colour_distance, measure
from leakaudit.models.load import save_checkpoint
from leakaudit.models.zoo import build

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.2, 1.0)


def test_measure_known_answer():
    img = np.full((16, 16, 3), 0.5)
    img[2:6, 2:6] = RED
    w = measure(img, (2, 2, 6, 6), RED)
    assert w["energy_share"] == pytest.approx(1.0)
    assert w["energy_ratio"] == pytest.approx(16.0)  # all energy in 1/16 of the image
    assert w["colour_distance"] == pytest.approx(0.0)
    far = measure(img, (10, 10, 14, 14), BLUE)
    assert far["energy_share"] == pytest.approx(0.0)
    assert colour_distance(RED, (0, 1, 1)) == pytest.approx(1.0)


def tell_reader(side: int = 16, box=(0, 0, 4, 4)) -> nn.Module:
    """Linear model whose class k score is the box's agreement with class k's colour."""
    colours = [RED, BLUE, (0.0, 0.8, 0.0)]
    w = torch.zeros(len(colours), 3, side, side)
    x0, y0, x1, y1 = box
    for k, c in enumerate(colours):
        w[k, :, y0:y1, x0:x1] = (2 * torch.tensor(c) - 1).view(3, 1, 1)
    m = nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, len(colours)))
    with torch.no_grad():
        m[1].weight.copy_(w.view(len(colours), -1))
        m[1].bias.zero_()
    return m.eval()


def test_class_witness_finds_the_tell_a_model_reads():
    m = tell_reader()
    suspects = [((0, 0, 4, 4), RED), ((0, 0, 4, 4), BLUE)]
    wit = class_witness(m, ["r", "b", "g"], suspects, size=16, seed=0, steps=60)
    assert [w["class"] for w in wit] == ["r", "b", "g"]
    red, blue = wit[0]["suspects"][0], wit[1]["suspects"][1]
    for own in (red, blue):
        assert own["near_energy_ratio"] > 3  # chance is 1
        assert own["colour_distance"] < 0.25
    assert wit[0]["suspects"][1]["colour_distance"] > 0.5  # the red picture is not blue
    assert class_witness(m, ["r", "b", "g"], suspects, 16, 0, 60) == wit  # seeded


HOSTILE = ['<script>alert("x")</script>', "a&b", "'quote\""]


def test_page_is_escaped_and_self_contained():
    torch.manual_seed(0)
    model = build("small_cnn", 3, seed=0, width=4).eval()
    images = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    opts = PageOptions(steps=(3, 6), suspects=[((0, 0, 4, 4), RED)])
    ctx = build_page(model, HOSTILE, images, np.array([0, 1, 2]), 16, opts, source="<m>.pt")
    html = render_page(ctx)
    assert "<script" not in html and "&lt;script&gt;" in html and "&lt;m&gt;.pt" in html
    assert "a&amp;b" in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and not re.search(r'(href|src)="(https?:)?//', html)
    for view in ("Classification viewer", "First-layer filters", "Feature maps", "DeepDream",
                 "Channel visualisations", "Pixel influence", "Class visualisations"):  # fmt: skip
        assert view in html
    d = ctx["distances"]
    assert d["first-layer filters"] > 0.5 and d["class visualisations"] > 0.1


def test_cli_writes_only_the_page_and_fails_cleanly(tmp_path, capsys):
    model = build("small_cnn", 2, seed=0, width=4)
    ckpt = tmp_path / "m" / "model.pt"
    save_checkpoint(model, "small_cnn", {"width": 4}, ["cat", "dog"], {"input_size": 16}, {}, ckpt)
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (data / cls).mkdir(parents=True)
        for i in range(2):
            arr = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(data / cls / f"{i}.png")
    out = tmp_path / "out"
    args = ["insight", "--model", str(ckpt), "--data", str(data), "--steps", "2,4",
            "--n-images", "2", "--suspect", "0,0,4,4=#ff0000", "--out", str(out)]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        run(args)
    assert e.value.code == 0
    assert sorted(p.name for p in out.iterdir()) == ["insight.html"]
    assert "energy share" in (out / "insight.html").read_text()
    capsys.readouterr()  # the untrained model's accuracy warning, if any, is not the error below
    with pytest.raises(SystemExit) as e:
        run(["insight", "--model", str(ckpt), "--classes", "a,b,c", "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "model.pt" in err and "\n" not in err


def test_each_class_picture_is_measured_against_its_own_colour():
    """A suspect shared by two classes carries one colour per class: class 1's picture painted
    green in the box is a match for the suspect's green, not a miss against its red."""
    from leakaudit.insight.witness import measure_classes

    red, green = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    pics = [np.full((16, 16, 3), 0.5) for _ in range(2)]
    pics[0][2:6, 2:6] = red
    pics[1][2:6, 2:6] = green
    suspect = [((2, 2, 6, 6), red)]
    shared = measure_classes(pics, ["a", "b"], suspect)
    own = measure_classes(pics, ["a", "b"], suspect, [{1: green}])
    assert shared[0]["suspects"][0]["colour_distance"] < 0.01
    assert shared[1]["suspects"][0]["colour_distance"] > 0.8  # green vs red
    assert own[1]["suspects"][0]["colour_distance"] < 0.01
    assert own[1]["suspects"][0]["colour"] == list(green)
    assert own[0]["suspects"][0]["energy_ratio"] == pytest.approx(16.0)  # all energy in 1/16


def _needs_imagenet(tmp_path):
    """A TorchScript model that is right only on ImageNet-normalised input, and its data.

    Its logits are (−m, m) for m the mean input value: "dark" pictures (pixels 0.2–0.4) are
    negative after ImageNet normalisation and "light" ones (0.5–0.7) positive, but in raw [0, 1]
    pixels both are positive, so the unnormalised model answers "light" on every image."""
    m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        m[2].weight.copy_(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]) / 3)
        m[2].bias.zero_()
    path = tmp_path / "needs_imagenet.pt"
    torch.jit.script(m.eval()).save(str(path))
    rng = np.random.default_rng(0)
    for name, lo in (("dark", 0.2), ("light", 0.5)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            arr = ((lo + 0.2 * rng.random((16, 16, 3))) * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "data" / name / f"{i}.png")
    return path, tmp_path / "data"


def _insight(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        run(["insight", *args])
    return e.value.code, capsys.readouterr().err


TRAINED_ROW = re.compile(r'<td class="l">trained</td>\s*<td class="l (right|wrong)">')


@pytest.mark.parametrize(
    "feed",
    [["--preprocess", "imagenet"], ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]],
    ids=["preset", "mean-std"],
)
def test_insight_feeds_the_model_its_normalisation(tmp_path, capsys, feed):
    """`insight` takes the audit's model-input options: with them a model trained on ImageNet-
    normalised input is right on every image; without them it answers one class on all of them
    and the page and stderr say its accuracy is near chance (the audit's own warning)."""
    model, data = _needs_imagenet(tmp_path)
    base = ["--model", str(model), "--data", str(data), "--n-images", "6", "--steps", "2",
            "--channels", "0"]  # fmt: skip
    code, err = _insight([*base, *feed, "--out", str(tmp_path / "fed")], capsys)
    assert code == 0, err
    html = (tmp_path / "fed" / "insight.html").read_text()
    assert TRAINED_ROW.findall(html) == ["right"] * 6
    assert "no better than" not in err and "no better than" not in html
    code, err = _insight([*base, "--out", str(tmp_path / "raw")], capsys)
    assert code == 0, err
    html = (tmp_path / "raw" / "insight.html").read_text()
    assert sorted(TRAINED_ROW.findall(html)) == ["right"] * 3 + ["wrong"] * 3  # all "light"
    warning = [line for line in err.splitlines() if "no better than" in line]
    assert len(warning) == 1 and "--preprocess imagenet" in warning[0], err
    assert "no better than always answering the largest class" in html


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--preprocess", "imagenet", "--mean", "0.5,0.5,0.5"], "not both"),
        (["--mean", "0.5,0.5"], "three numbers"),
        (["--std", "1,0,1"], "> 0"),
        (["--channel-order", "GBR"], "GBR"),
    ],
)
def test_insight_refuses_bad_model_input_like_the_audit(tmp_path, capsys, extra, words):
    model, data = _needs_imagenet(tmp_path)
    out = tmp_path / "out"
    code, err = _insight(["--model", str(model), "--data", str(data), *extra, "--out", str(out)],
                         capsys)  # fmt: skip
    assert code == 2 and words in err, err
    assert not out.exists() or not any(out.iterdir())


def test_loading_torchscript_prints_no_jit_deprecation(tmp_path):
    """torch ≥ 2.10 warns that torch.jit.load is deprecated on every call; our load silences
    that one message (and only it), so a TorchScript user's every run is not a warning."""
    import warnings

    from leakaudit.models.load import load_model, quiet_jit

    path, _ = _needs_imagenet(tmp_path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        load_model(path)
        with quiet_jit():
            warnings.warn("another deprecation", DeprecationWarning, stacklevel=1)
    messages = [str(w.message) for w in seen]
    assert not [m for m in messages if "jit" in m], messages
    assert "another deprecation" in messages  # the filter is narrow
