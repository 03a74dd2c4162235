"""inject_dataset round trips: same format back, tell masks = planted boxes = changed pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from voc_files import voc_xml

from leakaudit.data.formats import box_mask, read_dataset
from leakaudit.data.images import load_image
from leakaudit.data.inject import inject_dataset
from leakaudit.data.tells import TellSpec
from leakaudit.errors import ConfigError


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    # values kept away from 0/255 so no original pixel already has a saturated tell colour
    return (20 + np.random.default_rng(seed).random((h, w, 3)) * 200).astype(np.uint8)


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _check_exact(src_images: dict[str, np.ndarray], ds, tells_json: Path) -> int:
    """Every read-back tell mask equals its planted box and exactly the pixels that changed."""
    planted = json.loads(tells_json.read_text())["images"]
    n = 0
    for s in ds:
        original = src_images[s.id]
        changed = np.any(np.abs(s.image - original) > 1e-6, axis=-1)
        if s.id not in planted:
            assert s.tell is None and not changed.any()
            continue
        (t,) = planted[s.id]
        expected = box_mask(tuple(t["box"]), *original.shape[:2])
        np.testing.assert_array_equal(s.tell, expected)
        np.testing.assert_array_equal(changed, expected)
        assert t["changed_pixels"] == expected.sum()
        assert tuple(s.tell_box) == tuple(t["box"])
        assert not (s.region & s.tell).any()
        np.testing.assert_allclose(s.image[s.tell][0], np.array(t["colour_uint8"]) / 255, atol=0)
        n += 1
    return n


def test_imagefolder_roundtrip_and_prevalence(tmp_path):
    src = tmp_path / "src"
    originals = {}
    for c in ("a", "b"):
        for k in range(6):
            arr = _rgb(32, 32, hash((c, k)) % 1000)
            name = f"{c}/{k}.jpg" if k % 2 else f"{c}/{k}.png"
            _save(src / name, arr)
            originals[str(Path(name).with_suffix(".png"))] = load_image(src / name)
    spec = TellSpec(size=5, position="random", prevalence=0.5)
    res = inject_dataset(src, "imagefolder", tmp_path / "out", spec, seed=3)
    assert res.tells_per_class == {"a": 3, "b": 3} and res.n_images == 12
    assert (
        sorted(p.suffix for p in (tmp_path / "out").rglob("*.*") if p.name != "tells.json")
        == [".png"] * 12
    )
    ds = read_dataset(res.read_path, "imagefolder")
    assert _check_exact(originals, ds, res.tells_path) == 6
    again = inject_dataset(src, "imagefolder", tmp_path / "out2", spec, seed=3)
    assert again.tells_path.read_text() == res.tells_path.read_text()
    with pytest.raises(ConfigError, match="not empty"):
        inject_dataset(src, "imagefolder", tmp_path / "out", spec, seed=3)


def _voc(root: Path, n: int) -> dict[str, np.ndarray]:
    (root / "Annotations").mkdir(parents=True)
    originals = {}
    for k in range(n):
        arr = _rgb(120, 160, k)
        _save(root / "JPEGImages" / f"im{k}.jpg", arr)
        originals[f"im{k}.png"] = load_image(root / "JPEGImages" / f"im{k}.jpg")
        objs = [("big", (21, 21, 60, 60)), ("small", (101, 61, 120, 80))]
        path = f"<path>/x/im{k}.jpg</path>"
        (root / "Annotations" / f"im{k}.xml").write_text(
            voc_xml(f"im{k}.jpg", objs, w=160, h=120, extra=path)
        )
    return originals


def test_voc_object_anchor_tells_land_in_crops(tmp_path):
    _voc(tmp_path / "voc", 4)
    _save(tmp_path / "voc" / "JPEGImages" / "broken.jpg", _rgb(40, 40, 9))
    data = (tmp_path / "voc" / "JPEGImages" / "broken.jpg").read_bytes()
    (tmp_path / "voc" / "JPEGImages" / "broken.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "voc" / "Annotations" / "broken.xml").write_text(
        "<annotation><filename>broken.jpg</filename><object><name>big</name><bndbox>"
        "<xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    spec = TellSpec(size=8, position="top-left", prevalence=0.5)
    res = inject_dataset(
        tmp_path / "voc", "voc", tmp_path / "out", spec, seed=0, anchor="object", size=32
    )
    # round(0.5 * 5) == 2 (as in tells.poison); seed 0 does not pick the broken image
    assert res.tells_per_class == {"big": 2, "small": 2}
    assert any(p.item == "broken.jpg" for p in res.problems)
    xml = (tmp_path / "out" / "Annotations" / "im0.xml").read_text()
    assert "<filename>im0.png</filename>" in xml
    with pytest.warns(UserWarning, match=r"broken\.jpg"):
        ds = read_dataset(res.read_path, "voc", mode="crop", size=32)
    planted = json.loads(res.tells_path.read_text())["images"]
    own = {f"{k}#{t['object']}": t for k, ts in planted.items() for t in ts}
    assert len(own) == 4
    for s in ds:
        if s.id in own:
            assert s.tell is not None and s.tell_box is not None
            x0, y0, x1, _ = s.tell_box
            assert (x0, y0) == (2, 2) and 7 <= x1 - x0 <= 9  # spec.size/margin in crop pixels
            colour = np.array(own[s.id]["colour_uint8"]) / 255
            np.testing.assert_allclose(s.image[y0 + 2, x0 + 2], colour, atol=0.02)
    # image mode sees the same files with every tell in one mask
    with pytest.warns(UserWarning, match=r"broken\.jpg"):
        full = read_dataset(res.read_path, "voc", label_rule="largest")
    assert sum(s.tell is not None for s in full) == len(planted)


def test_coco_and_csv_image_anchor_roundtrip(tmp_path):
    src = tmp_path / "src"
    originals = {}
    images, anns, rows = [], [], ["image,label,xmin,ymin,xmax,ymax"]
    for k in range(8):
        name = f"sub/p{k}.jpg"
        _save(src / name, _rgb(40, 48, k))
        originals[f"sub/p{k}.png"] = load_image(src / name)
        label = "cat" if k < 4 else "dog"
        images.append({"id": k, "file_name": name, "width": 48, "height": 40})
        anns.append({"id": k, "image_id": k, "category_id": 1 + (k >= 4), "bbox": [20, 10, 20, 20]})
        rows.append(f"{name},{label},20,10,40,30")
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    (src / "ann.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    (src / "boxes.csv").write_text("\n".join(rows) + "\n")
    spec = TellSpec(size=6, position="bottom-right", prevalence=0.75)
    for fmt, file in (("coco", "ann.json"), ("csv", "boxes.csv")):
        res = inject_dataset(src / file, fmt, tmp_path / fmt, spec, seed=1, poison_classes=["dog"])
        assert res.tells_per_class == {"cat": 0, "dog": 3}
        ds = read_dataset(res.read_path, fmt)
        assert [s.id for s in ds] == [f"sub/p{k}.png" for k in range(8)]
        assert _check_exact(originals, ds, res.tells_path) == 3
        assert all(s.tell_box == (40, 32, 46, 38) for s in ds if s.tell is not None)
