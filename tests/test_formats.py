"""Readers: every format on tiny files in tmp_path, including the bad inputs users send."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from voc_files import make_voc as _make_voc
from voc_files import rgb as _rgb
from voc_files import save as _save
from voc_files import voc_xml as _voc_xml

from leakaudit.data.formats import (
    READERS,
    box_mask,
    crop_window,
    polygon_mask,
    read_coco,
    read_csv,
    read_dataset,
    read_imagefolder,
    read_voc,
)
from leakaudit.data.images import load_image, read_image
from leakaudit.errors import ConfigError, DatasetError

# ---------------------------------------------------------------------------------- images


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_load_image_conversions(tmp_path):
    rgb = _rgb(20, 30)
    img, conv = read_image(_save(tmp_path / "rgb.png", rgb))
    assert conv is None and img.dtype == np.float32 and img.shape == (20, 30, 3)
    np.testing.assert_allclose(img, rgb / 255.0, atol=1e-6)

    gray, conv = read_image(_save(tmp_path / "g.png", rgb[..., 0]))
    assert "grayscale" in conv and np.allclose(gray[..., 0], gray[..., 2])

    rgba = np.dstack([rgb, np.zeros((20, 30), np.uint8)])
    rgba[0, 0, 3] = 255
    out, conv = read_image(_save(tmp_path / "a.png", rgba))
    assert "white" in conv
    assert np.allclose(out[1, 1], 1.0) and np.allclose(out[0, 0], rgb[0, 0] / 255.0)

    a16 = (np.arange(600, dtype=np.uint16) * 100).reshape(20, 30)
    out, conv = read_image(_save(tmp_path / "g16.png", a16))
    assert "65535" in conv
    np.testing.assert_allclose(out[..., 0], a16 / 65535.0, atol=1e-6)

    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "p.png")
    out, conv = read_image(tmp_path / "p.png")
    assert conv and out.shape == (20, 30, 3)

    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    out, conv = read_image(tmp_path / "c.jpg")
    assert "CMYK" in conv and out.shape == (20, 30, 3)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_and_corrupt_images_raise(tmp_path, ext):
    p = _truncate(_save(tmp_path / f"t.{ext}", _rgb(64, 64)))
    with pytest.raises(DatasetError, match=f"t.{ext}"):
        load_image(p)
    bad = tmp_path / f"bad.{ext}"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=f"bad.{ext}"):
        load_image(bad)
    with pytest.raises(DatasetError, match="not found"):
        load_image(tmp_path / "missing.png")


# ---------------------------------------------------------------------------------- geometry


def test_voc_box_equals_coco_polygon(tmp_path):
    # VOC 1-based inclusive (11..30) is the same pixels as the COCO pixel-edge polygon 10..30.
    _make_voc(tmp_path / "voc", {"a.png": [("cat", (11, 21, 30, 40))]})
    voc = read_voc(tmp_path / "voc")
    coco_dir = tmp_path / "coco"
    _save(coco_dir / "a.png", _rgb(80, 100, 0))
    poly = [10, 20, 30, 20, 30, 40, 10, 40]
    (coco_dir / "ann.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}],
                "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "segmentation": [poly]}],
                "categories": [{"id": 3, "name": "cat"}],
            }
        )
    )
    coco = read_coco(coco_dir / "ann.json")
    expected = np.zeros((80, 100), bool)
    expected[20:40, 10:30] = True
    np.testing.assert_array_equal(voc[0].region, expected)
    np.testing.assert_array_equal(coco[0].region, expected)
    np.testing.assert_array_equal(voc[0].image, coco[0].image)
    pm = polygon_mask([np.array(poly, float).reshape(-1, 2)], 80, 100)
    np.testing.assert_array_equal(pm, box_mask((10, 20, 30, 40), 80, 100))


def _rle_encode_string(mask: np.ndarray) -> str:
    """pycocotools' rleToString, for testing the decoder."""
    flat = mask.T.ravel()
    counts, val, run = [], False, 0
    for v in flat:
        if bool(v) != val:
            counts.append(run)
            run, val = 0, bool(v)
        run += 1
    counts.append(run)
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_coco_rle_and_bbox(tmp_path):
    _save(tmp_path / "a.png", _rgb(40, 50))
    m = np.zeros((40, 50), bool)
    m[5:27, 8:30] = True  # square, so a margin-0 crop is exactly the object
    counts = []
    flat, val, run = m.T.ravel(), False, 0
    for v in flat:
        if bool(v) != val:
            counts.append(run)
            run, val = 0, bool(v)
        run += 1
    counts.append(run)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [40, 50], "counts": c}}
        for c in (counts, _rle_encode_string(m))
    ]
    anns.append({"id": 3, "image_id": 1, "category_id": 1, "bbox": [8, 5, 22, 22]})
    (tmp_path / "ann.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png"}],
                "annotations": anns,
                "categories": [{"id": 1, "name": "x"}],
            }
        )
    )
    ds = read_coco(tmp_path / "ann.json", mode="crop", size=32, margin=0.0)
    assert len(ds) == 3
    for s in ds:
        assert s.region.all()  # margin 0: the crop is exactly the object, all region
    ds = read_coco(tmp_path / "ann.json")
    np.testing.assert_array_equal(ds[0].region, m)


def test_crop_window_stays_inside_and_pads_only_huge_boxes():
    assert crop_window((40, 40, 60, 60), 100, 100, 0.5) == (30, 30, 70, 70)
    x0, y0, x1, y1 = crop_window((0, 0, 20, 20), 100, 100, 0.5)  # shifted, not padded
    assert (x0, y0) == (0, 0) and x1 - x0 == 40
    x0, y0, x1, y1 = crop_window((10, 10, 90, 70), 80, 100, 0.5)  # context shrunk to short side
    assert x1 - x0 == 80 and y0 >= 0 and y1 <= 80


def test_fixed_window_gives_every_crop_one_scale(tmp_path):
    # proportional context: a 10-px and a 30-px box both fill half of their crop
    assert crop_window((45, 45, 55, 55), 100, 100, 0.5) == (40, 40, 60, 60)
    # fixed window: the same 50-px side for both, so the crop's scale no longer encodes box size
    assert crop_window((45, 45, 55, 55), 100, 100, 0.5, window=50) == (25, 25, 75, 75)
    assert crop_window((35, 35, 65, 65), 100, 100, 0.5, window=50) == (25, 25, 75, 75)
    assert crop_window((20, 20, 80, 80), 100, 100, 0.5, window=50) == (20, 20, 80, 80)  # ≥ box
    _make_voc(tmp_path, {"a.png": [("small", (10, 10, 20, 20)), ("big", (50, 30, 80, 60))]})
    ds = read_voc(tmp_path, mode="crop", size=40, window=40)
    areas = {ds.class_names[s.label]: int(s.region.sum()) for s in ds}
    # VOC boxes are 1-based inclusive: 11 and 31 px wide; a 40-px window at 40 px keeps them 1:1
    assert areas == {"small": 11 * 11, "big": 31 * 31}
    with pytest.raises(ConfigError, match="window"):
        read_voc(tmp_path, mode="crop", window=0)


def test_crop_padding_is_not_region(tmp_path):
    # a box as wide as the image → square crop taller than the image → padded rows
    _make_voc(tmp_path, {"a.png": [("cat", (1, 31, 100, 50))]})
    ds = read_voc(tmp_path, mode="crop", size=50, margin=0.5)
    s = ds[0]
    assert s.image.shape == (50, 50, 3)
    assert s.region.any() and not s.region[0].any() and not s.region[-1].any()


# ---------------------------------------------------------------------------------- VOC


def test_voc_crop_mode_bad_inputs(tmp_path):
    root = _make_voc(
        tmp_path,
        {
            "a.png": [
                ("RBC", (11, 11, 30, 30)),
                ("WBC", (81, 61, 130, 90)),  # partly outside → clipped
                ("RBC", (200, 200, 250, 250)),  # fully outside → skipped
                ("WBC", (40, 40, 40, 50)),  # 1 px wide → skipped
                ("RBC", (50, 50, 45, 60)),  # degenerate → skipped
            ],
            "b.jpg": [("WBC", (5, 5, 60, 60))],
            "corrupt.png": [("RBC", (5, 5, 20, 20))],
        },
    )
    _truncate(root / "JPEGImages" / "corrupt.png")
    (root / "Annotations" / "gone.xml").write_text(_voc_xml("gone.jpg", [("RBC", (1, 1, 9, 9))]))
    with pytest.warns(UserWarning, match="corrupt.png"):
        ds = read_voc(root, mode="crop", size=32)
    assert ds.class_names == ["RBC", "WBC"]
    assert ds.counts() == {"RBC": 1, "WBC": 2}
    assert [s.id for s in ds] == ["a.png#0", "a.png#1", "b.jpg#0"]
    assert all(s.image.shape == (32, 32, 3) and s.region.shape == (32, 32) for s in ds)
    assert all(s.region.any() and not s.region.all() for s in ds)
    text = " | ".join(f"{p.item}: {p.problem} → {p.action}" for p in ds.problems)
    assert "partly outside" in text and "clipped" in text
    assert "outside the 100×80 image → skipped" in text
    assert "smaller than 2 px → skipped" in text
    assert "degenerate box" in text
    assert "missing image gone.jpg → skipped" in text
    assert "corrupt.png" in text
    assert len(ds.problems) == 6


def test_voc_image_mode_label_rules(tmp_path):
    root = _make_voc(
        tmp_path,
        {
            "one.png": [("cat", (11, 11, 30, 30)), ("cat", (41, 41, 50, 50))],
            "mixed.png": [("cat", (11, 11, 20, 20)), ("dog", (31, 31, 80, 70))],
            "maj.png": [("cat", (1, 1, 5, 5)), ("cat", (6, 6, 9, 9)), ("dog", (21, 21, 80, 70))],
        },
    )
    ds = read_voc(root, size=40)
    assert [s.id for s in ds] == ["one.png"]
    assert any("several classes" in p.problem for p in ds.problems)
    one = read_voc(root)[0]
    assert one.region.sum() == 20 * 20 + 10 * 10
    with pytest.raises(DatasetError, match="several classes"):
        read_voc(root, label_rule="error")
    maj = read_voc(root, label_rule="majority")
    assert {s.id: maj.class_names[s.label] for s in maj} == {"maj.png": "cat", "one.png": "cat"}
    big = read_voc(root, label_rule="largest")
    assert {s.id: big.class_names[s.label] for s in big}["maj.png"] == "dog"


def test_classes_given_unknown_and_skip(tmp_path):
    root = _make_voc(tmp_path, {"a.png": [("cat", (1, 1, 20, 20)), ("dog", (30, 30, 60, 60))]})
    with pytest.raises(DatasetError, match="'dog'"):
        read_voc(root, mode="crop", classes=["cat"])
    ds = read_voc(root, mode="crop", classes=["dog", "cat", "bird"])
    assert ds.class_names == ["dog", "cat", "bird"] and ds.counts()["dog"] == 1
    ds = read_voc(root, mode="crop", classes=["cat"], skip_unknown=True)
    assert len(ds) == 1 and any(p.item == "dog" for p in ds.problems)


def test_empty_and_malformed(tmp_path):
    root = _make_voc(tmp_path / "v", {"a.png": [("cat", (300, 300, 400, 400))]})
    with pytest.raises(DatasetError, match="no usable samples"):
        read_voc(root, mode="crop")
    (root / "Annotations" / "bad.xml").write_text("<annotation><object></annotation>")
    with pytest.raises(DatasetError, match=r"bad\.xml.*line 1"):
        read_voc(root)
    bad_json = tmp_path / "c.json"
    bad_json.write_text('{"images": [\n  {"id": 1,, }]}')
    with pytest.raises(DatasetError, match=r"c\.json.*line 2"):
        read_coco(bad_json)
    bad_csv = tmp_path / "b.csv"
    bad_csv.write_text("image,label,xmin,ymin,xmax,ymax\na.png,cat,1,2,3,4\na.png,cat,1,x,3,4\n")
    with pytest.raises(DatasetError, match=r"b\.csv: line 3"):
        read_csv(bad_csv)
    no_cols = tmp_path / "n.csv"
    no_cols.write_text("image,label\na.png,cat\n")
    with pytest.raises(DatasetError, match="missing column"):
        read_csv(no_cols)
    with pytest.raises(DatasetError, match="not a Pascal VOC"):
        read_voc(tmp_path / "nothing")


def test_csv_rows_per_image_and_missing_image(tmp_path):
    _save(tmp_path / "img" / "a.png", _rgb(80, 100))
    _save(tmp_path / "img" / "b.png", _rgb(80, 100, 1))
    (tmp_path / "boxes.csv").write_text(
        "image,label,xmin,ymin,xmax,ymax\n"
        "a.png,cat,10,20,30,40\n"
        "a.png,cat,50,50,60,60\n"
        "b.png,dog,0,0,50,40\n"
        "missing.png,dog,0,0,5,5\n"
    )
    ds = read_csv(tmp_path / "boxes.csv", tmp_path / "img")
    assert ds.class_names == ["cat", "dog"] and len(ds) == 2
    assert ds[0].region.sum() == 400 + 100
    assert any("missing image" in p.problem and p.item == "missing.png" for p in ds.problems)
    crops = read_csv(tmp_path / "boxes.csv", tmp_path / "img", mode="crop")
    assert len(crops) == 3 and crops[0].image.shape == (64, 64, 3)


def test_max_per_class_is_seeded(tmp_path):
    items = {f"i{k}.png": [("a", (1, 1, 20, 20)), ("b", (31, 31, 50, 50))] for k in range(6)}
    root = _make_voc(tmp_path, items)
    ids = [[s.id for s in read_voc(root, mode="crop", max_per_class=3, seed=s)] for s in (0, 0, 1)]
    assert ids[0] == ids[1] and len(ids[0]) == 6
    assert ids[0] != ids[2]
    ds = read_voc(root, mode="crop", max_per_class=3)
    assert ds.counts() == {"a": 3, "b": 3}
    assert not ds.problems  # the user's own cap is not a data problem


# ---------------------------------------------------------------------------------- folder


def test_imagefolder_masks_conversions_and_sizes(tmp_path):
    root, masks = tmp_path / "data", tmp_path / "masks"
    _save(root / "cat" / "c1.png", _rgb(40, 40))
    _save(root / "cat" / "gray.png", _rgb(40, 40)[..., 0])
    _save(root / "dog" / "rgba.png", np.dstack([_rgb(40, 40), np.full((40, 40), 255, np.uint8)]))
    _save(root / "dog" / "g16.png", np.full((40, 40), 30000, np.uint16))
    _save(root / "dog" / "big.jpg", _rgb(60, 50))
    _truncate(_save(root / "dog" / "broken.jpg", _rgb(40, 40)))
    (root / "dog" / "notes.txt").write_text("hi")
    m = np.zeros((40, 40), np.uint8)
    m[10:20, 5:15] = 255
    _save(masks / "cat" / "c1.png", m)
    with pytest.warns(UserWarning, match="broken.jpg"):
        ds = read_imagefolder(root, masks_root=masks)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 5
    assert all(s.image.shape == (40, 40, 3) for s in ds)
    assert ds[0].region.sum() == 100 and not ds[1].region.any()
    actions = [(p.item, p.action) for p in ds.problems]
    assert ("dog/big.jpg", "resized") in actions
    assert sum(a == "converted" for _, a in actions) == 3
    assert ("dog/broken.jpg", "skipped") in actions and ("dog/notes.txt", "skipped") in actions
    with pytest.warns(UserWarning, match="broken.jpg"):
        no_masks = read_imagefolder(root, size=16)
    notes = [p for p in no_masks.problems if "no region annotation" in p.problem]
    assert len(notes) == 1 and not any(s.region.any() for s in no_masks)
    assert no_masks[0].image.shape == (16, 16, 3)
    with pytest.raises(DatasetError, match="'dog'"):
        read_imagefolder(root, classes=["cat"])


def test_read_dataset_dispatch(tmp_path):
    assert set(READERS) == {"imagefolder", "voc", "coco", "csv"}
    root = _make_voc(tmp_path, {"a.png": [("cat", (11, 11, 30, 30))]})
    assert len(read_dataset(root, "voc", mode="crop", size=16)) == 1
    with pytest.raises(ConfigError, match="unknown dataset format"):
        read_dataset(root, "yolo")
    with pytest.raises(ConfigError, match="option"):
        read_dataset(root, "voc", colour="red")
    with pytest.raises(ConfigError, match="mode"):
        read_voc(root, mode="tiles")
