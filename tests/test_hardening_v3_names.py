"""Hardening v3, names and degenerate datasets: each case ran (or crashed at the very end) on
odd names or too little data; each is now a counted data problem or a one-line error."""

from __future__ import annotations

import json
import os
import unicodedata

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from voc_files import rgb, save

from leakaudit.cli import run
from leakaudit.data.formats import read_coco, read_dataset, read_imagefolder
from leakaudit.data.names import check_class_names, display_name
from leakaudit.errors import DatasetError


class Constant(nn.Module):
    """Ignores its input: enough for the audit to run end to end without training."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.linspace(1, 0, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0 * x.mean(dim=(1, 2, 3))[:, None]


def _folder(root, classes: dict, n: int = 3, side: int = 12):
    """``root/<class>/i.png``; class names are str or raw bytes (written with os calls)."""
    broot = os.fsencode(root)
    for k, name in enumerate(classes):
        bname = name if isinstance(name, bytes) else os.fsencode(name)
        os.makedirs(os.path.join(broot, bname), exist_ok=True)
        for i in range(classes[name] if isinstance(classes, dict) else n):
            with open(os.path.join(broot, bname, f"{i}.png".encode()), "wb") as f:
                Image.fromarray(rgb(side, side, 10 * k + i)).save(f, format="PNG")
    return root


def _cli(*args) -> int:
    with pytest.raises(SystemExit) as exc:
        run([str(a) for a in args])
    return exc.value.code


def _audit_args(data, model, out, *extra):
    return ["audit", "--data", data, "--model", model, "--methods", "saliency", "--size", "16",
            "--quiet", "--no-cache", "--out", out, *extra]  # fmt: skip


def _problems(ds, text):
    return [p for p in ds.problems if text in p.problem]


# ------------------------------------------------------------------ 1: names not UTF-8


def test_display_name_escapes_surrogates():
    assert display_name(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\xe9"
    assert display_name("\udc80x") == "\\x80x"
    assert display_name("a\ud800") == "a\\ud800"  # no escaped byte: shown as the code point
    assert display_name("Café") == "Café"


def test_non_utf8_class_folder_audit_writes_every_output(tmp_path, capsys):
    data = _folder(tmp_path / "data", {b"caf\xe9": 4, b"dog": 4})
    model = tmp_path / "constant.pt"
    torch.jit.script(Constant(2)).save(str(model))
    (tmp_path / "fast.toml").write_text("discovery = false\nsanity = false\nablation = false\n")
    out = tmp_path / "out"
    code = _cli(*_audit_args(data, model, out, "--config", tmp_path / "fast.toml"))
    assert code in (0, 1, 3), capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert "caf\\xe9" in summary["class_names"]
    problems = [p["problem"] for p in summary["data_problems"]]
    assert any("class folder name is not valid UTF-8, shown as caf\\xe9" in p for p in problems)
    md = (out / "summary.md").read_text(encoding="utf-8")  # strict: no surrogate got written
    assert "Data problems: 3" in md  # the .md counts them; the report lists them
    assert "caf\\xe9</td>" in (out / "report.html").read_text(encoding="utf-8")


def test_non_utf8_names_keep_the_raw_path(tmp_path):
    _folder(tmp_path, {b"caf\xe9": 2, b"dog": 2})
    with open(os.path.join(os.fsencode(tmp_path / "dog"), b"x\xff.png"), "wb") as f:
        Image.fromarray(rgb(12, 12)).save(f, format="PNG")
    ds = read_imagefolder(tmp_path, size=8)
    assert ds.class_names == ["caf\\xe9", "dog"] and len(ds) == 5  # every image still read
    assert "dog/x\\xff.png" in [s.id for s in ds]
    assert len(_problems(ds, "class folder name is not valid UTF-8")) == 1
    assert len(_problems(ds, "file name is not valid UTF-8, shown as x\\xff.png")) == 1
    for p in ds.problems:
        (p.item + p.problem + p.action).encode("utf-8")  # no lone surrogate anywhere


def test_coco_surrogate_escapes_are_shown_escaped(tmp_path):
    save(tmp_path / "a.png", rgb(12, 12))
    os.rename(tmp_path / "a.png", os.path.join(os.fsencode(tmp_path), b"a\x80.png"))
    save(tmp_path / "b.png", rgb(12, 12, 1))
    doc = {
        "images": [{"id": 1, "file_name": "a\udc80.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 1, "name": "c\udc80t"}, {"id": 2, "name": "dog"}],
    }  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(doc))  # json writes "\udc80" escapes
    ds = read_coco(tmp_path / "ann.json")
    assert ds.class_names == ["c\\x80t", "dog"] and len(ds) == 2  # a\x80.png still opened
    assert sorted(s.id for s in ds) == ["a\\x80.png", "b.png"]
    assert len(_problems(ds, "category name is not valid UTF-8")) == 1
    assert len(_problems(ds, "file_name is not valid UTF-8")) == 1


# ------------------------------------------------------------ 2: separators in class names


@pytest.mark.parametrize("name", ["a\\b", "a/b", ".", "..", "a\0b"])
def test_check_class_names_refuses_separators(name):
    with pytest.raises(DatasetError, match="path separator") as e:
        check_class_names(["ok", name], "train")
    assert repr(name) in str(e.value)


def test_backslash_class_refused_by_inject_and_train_flagged_by_audit_read(tmp_path):
    data = _folder(tmp_path / "data", {"a\\b": 4, "c": 4})
    code = _cli("inject", "--data", data, "--out", tmp_path / "copy")
    assert code == 2
    assert not (tmp_path / "copy" / "a").exists()  # nothing split into a/b was written
    code = _cli("train", "--data", data, "--out", tmp_path / "m.pt", "--epochs", "1",
                "--size", "16", "--quiet")  # fmt: skip
    assert code == 2 and not (tmp_path / "m.pt").exists()
    ds = read_imagefolder(data, size=8)
    assert ds.class_names == ["a\\b", "c"]
    bad = _problems(ds, "path separator")
    assert len(bad) == 1 and "'a\\\\b'" in bad[0].problem


def test_backslash_class_refused_by_inject_api(tmp_path):
    from leakaudit.data.inject import inject_dataset
    from leakaudit.data.tells import TellSpec

    data = _folder(tmp_path / "data", {"a\\b": 2, "c": 2})
    with pytest.raises(DatasetError, match="a\\\\\\\\b"):
        inject_dataset(data, "imagefolder", tmp_path / "copy", TellSpec(size=3), 0)


# ------------------------------------------------------- 3: too few images to split


def test_train_one_image_per_class_is_an_error(tmp_path, capsys):
    data = _folder(tmp_path / "data", {f"c{k:03d}": 1 for k in range(200)}, side=8)
    code = _cli("train", "--data", data, "--out", tmp_path / "m.pt", "--epochs", "1",
                "--size", "16", "--quiet")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "≥ 2 images in every class" in err and "200 of 200 classes have 1 image" in err
    assert "c000, c001" in err


def test_audit_train_one_image_per_class_is_an_error(tmp_path, capsys):
    data = _folder(tmp_path / "data", {f"c{k}": 1 for k in range(20)}, side=8)
    code = _cli("audit", "--data", data, "--train", "--size", "16", "--methods", "saliency",
                "--quiet", "--no-cache", "--out", tmp_path / "out")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "≥ 2 images in every class" in err, err


def test_fit_needs_two_classes(tmp_path):
    from leakaudit.models.fit import fit

    ds = read_imagefolder(_folder(tmp_path, {"a": 6}), size=8)
    with pytest.raises(DatasetError, match="at least 2 classes"):
        fit(ds, epochs=1, progress=False)


# -------------------------------------------------------------------- 4: one class


def test_audit_on_one_class_is_an_error(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"a": 4})
    model = tmp_path / "constant.pt"
    torch.jit.script(Constant(1)).save(str(model))  # a 1-output model ran on main
    code = _cli(*_audit_args(data, model, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 2 and "images in 1 class(es) (a)" in err, err


def test_one_class_with_explicit_classes_is_a_recorded_problem(tmp_path):
    from leakaudit.auditing.pipeline import AuditOptions, _read

    data = _folder(tmp_path / "data", {"a": 4})
    opts = AuditOptions(data=str(data), format="imagefolder", size=8, classes=["a", "b"])
    ds, _ = _read(opts, None, {})
    assert ds.class_names == ["a", "b"]
    assert len(_problems(ds, "only 1 of 2 classes has images (a)")) == 1


# ------------------------------------------------------------- 5: near-duplicate names


def test_nfc_nfd_and_case_twins_are_counted(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "Café"), unicodedata.normalize("NFD", "Café")
    ds = read_imagefolder(_folder(tmp_path, {nfc: 2, nfd: 2, "Cat": 2, "cat": 2}), size=8)
    assert len(ds.class_names) == 4  # not merged
    norm = _problems(ds, "differ only in Unicode normalisation")
    case = _problems(ds, "differ only in letter case")
    assert len(norm) == 1 and repr(nfc) in norm[0].problem and repr(nfd) in norm[0].problem
    assert "Caf\\xe9" in norm[0].problem and "Cafe\\u0301" in norm[0].problem
    assert len(case) == 1 and "'Cat'" in case[0].problem and "'cat'" in case[0].problem


# ------------------------------------------------------ 6: multi-frame and tiny images


def test_multi_page_tiff_uses_the_first_frame(tmp_path):
    first, second = rgb(12, 12, 1), rgb(12, 12, 2)
    (tmp_path / "a").mkdir()
    Image.fromarray(first).save(tmp_path / "a" / "m.tif", save_all=True,
                                append_images=[Image.fromarray(second)])  # fmt: skip
    save(tmp_path / "b" / "x.png", rgb(12, 12, 3))
    ds = read_imagefolder(tmp_path)
    got = next(s for s in ds if s.id == "a/m.tif")
    assert np.allclose(got.image, first / 255.0, atol=1e-6)
    multi = _problems(ds, "multi-frame image (2 frames), first frame used")
    assert len(multi) == 1 and multi[0].item == "a/m.tif"


def test_animated_png_is_counted(tmp_path):
    frames = [Image.fromarray(rgb(12, 12, k)) for k in range(3)]
    (tmp_path / "a").mkdir()
    frames[0].save(tmp_path / "a" / "anim.png", save_all=True, append_images=frames[1:])
    save(tmp_path / "b" / "x.png", rgb(12, 12, 3))
    ds = read_dataset(tmp_path, "imagefolder")
    assert len(_problems(ds, "multi-frame image (3 frames)")) == 1


def test_tiny_image_is_skipped_and_counted(tmp_path):
    save(tmp_path / "a" / "dot.png", rgb(1, 1))
    save(tmp_path / "a" / "thin.png", rgb(7, 40))
    save(tmp_path / "a" / "ok.png", rgb(8, 8))
    save(tmp_path / "b" / "x.png", rgb(12, 12))
    ds = read_imagefolder(tmp_path, size=16)
    assert sorted(s.id for s in ds) == ["a/ok.png", "b/x.png"]
    tiny = _problems(ds, "smaller than 8 px")
    assert sorted(p.item for p in tiny) == ["a/dot.png", "a/thin.png"]
    assert all(p.action == "skipped" for p in tiny) and "1×1" in tiny[0].problem + tiny[1].problem
