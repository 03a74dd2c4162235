"""Crop export (`leakaudit crops`): written crops read back as the same samples, tells included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from voc_files import make_voc

from leakaudit.cli import main, run
from leakaudit.data.export import export_samples, file_stem
from leakaudit.data.formats import read_imagefolder, read_voc
from leakaudit.data.inject import inject_dataset
from leakaudit.data.samples import Dataset, Sample
from leakaudit.data.tells import TellSpec
from leakaudit.errors import ConfigError


def _voc(root: Path) -> Path:
    """Two 100×80 images, three objects of two classes."""
    objects = {
        "a.png": [("cell", (11, 11, 40, 40)), ("blob", (51, 21, 70, 40))],
        "b.png": [("cell", (31, 31, 60, 60))],
    }
    return make_voc(root, objects)


def test_file_stem_is_flat_and_keeps_the_object_index():
    assert file_stem("dir/a.jpg#3") == "dir__a_obj3"
    assert file_stem("b.png") == "b"


def test_exported_crops_read_back_as_the_same_samples(tmp_path):
    src = read_voc(_voc(tmp_path / "voc"), mode="crop", size=32, window=48)
    res = export_samples(src, tmp_path / "out")
    assert res.counts == {"blob": 1, "cell": 2} and res.n_tells == 0
    back = read_imagefolder(res.images_dir, masks_root=res.masks_dir)
    assert back.class_names == src.class_names
    by_id = {Path(s.id).stem: s for s in back}
    for s in src:
        b = by_id[file_stem(s.id)]
        assert b.label == s.label
        assert np.array_equal(b.region, s.region)
        assert np.abs(b.image - s.image).max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only


def test_tells_survive_export_and_per_crop_injection(tmp_path):
    voc = _voc(tmp_path / "voc")
    poisoned = tmp_path / "poisoned"
    inject_dataset(voc, "voc", poisoned, TellSpec(size=4), seed=0, anchor="object", size=32)
    src = read_voc(poisoned, mode="crop", size=32)
    assert all(s.tell is not None and s.tell.any() for s in src)
    res = export_samples(src, tmp_path / "out")
    assert (res.images_dir / "tells.json").is_file() and res.n_tells >= len(src)
    back = read_imagefolder(res.images_dir, masks_root=res.masks_dir)
    by_id = {Path(s.id).stem: s for s in back}
    for s in src:
        assert np.array_equal(by_id[file_stem(s.id)].tell, s.tell)
    # poisoning the exported crops puts exactly one tell in each crop, nowhere else
    again = tmp_path / "crops_poisoned"
    clean = export_samples(read_voc(voc, mode="crop", size=32), tmp_path / "clean").images_dir
    inject_dataset(clean, "imagefolder", again, TellSpec(size=4), seed=0)
    per_crop = read_imagefolder(again, masks_root=tmp_path / "clean" / "masks")
    assert all(int(s.tell.sum()) == 16 for s in per_crop)


def test_export_refuses_a_full_folder_and_unsafe_class_names(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    img = np.zeros((8, 8, 3), np.float32)
    ds = Dataset([Sample(img, 0, np.ones((8, 8), bool), "a")], ["ok"])
    with pytest.raises(ConfigError, match="not empty"):
        export_samples(ds, tmp_path / "full")
    bad = Dataset([Sample(img, 0, np.ones((8, 8), bool), "a")], ["../up"])
    with pytest.raises(ConfigError, match="folder name"):
        export_samples(bad, tmp_path / "new")


def test_crops_command(tmp_path, capsys):
    voc = _voc(tmp_path / "voc")
    out = tmp_path / "crops"
    args = ["crops", "--data", str(voc), "--format", "voc", "--out", str(out), "--size", "24"]
    res = CliRunner().invoke(main, [*args, "--window", "40"])
    assert res.exit_code == 0, res.output
    assert "wrote 3 crops" in res.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["blob", "cell"]
    assert Image.open(next((out / "masks" / "cell").iterdir())).size == (24, 24)
    # a class subset: the other class's objects stop the command (one line, exit 2) unless
    # --skip-unknown drops them
    sub = ["crops", "--data", str(voc), "--format", "voc", "--size", "24", "--classes", "cell"]
    with pytest.raises(SystemExit) as stop:
        run([*sub, "--out", str(tmp_path / "c1")])
    assert stop.value.code == 2 and "--skip-unknown" in capsys.readouterr().err
    res = CliRunner().invoke(main, [*sub, "--out", str(tmp_path / "c2"), "--skip-unknown"])
    assert res.exit_code == 0, res.output
    assert "wrote 2 crops" in res.output
    assert [p.name for p in (tmp_path / "c2" / "images").iterdir()] == ["cell"]


def test_model_card_keeps_crop_options_and_a_different_cut_is_noted(tmp_path):
    from leakaudit.auditing.pipeline import AuditOptions, crop_mismatch

    bccd = Path(__file__).resolve().parents[1] / "examples" / "data" / "bccd"
    model = tmp_path / "m" / "model.pt"
    args = ["train", "--data", str(bccd), "--format", "voc", "--mode", "crop", "--window", "192",
            "--max-per-class", "4", "--epochs", "1", "--size", "16", "--out", str(model),
            "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    card = json.loads((model.parent / "model_card.json").read_text())
    assert card["preprocessing"]["crop"] == {"margin": 0.5, "window": 192.0}
    same = AuditOptions(data="d", mode="crop", window=192.0)
    assert crop_mismatch(same, card, "model.pt") is None
    note = crop_mismatch(AuditOptions(data="d", mode="crop"), card, "model.pt")
    assert note and "window 192 px" in note and "margin 0.5" in note
    assert "no crops" in crop_mismatch(AuditOptions(data="d"), card, "model.pt")
    assert crop_mismatch(AuditOptions(data="d"), {"preprocessing": {"input_size": 64}}, "m") is None
