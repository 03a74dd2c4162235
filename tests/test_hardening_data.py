"""Readers against hostile input (issue 10): every case here crashed, leaked a path or gave a
silent wrong number before; each now is a counted data problem or a one-line DatasetError."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from voc_files import make_voc, rgb, save, voc_xml

from leakaudit.data.formats import (
    MAX_TELL_FRACTION,
    ReadOptions,
    detect_format,
    read_coco,
    read_csv,
    read_dataset,
    read_imagefolder,
    read_voc,
)
from leakaudit.data.images import MAX_PIXELS, read_image
from leakaudit.errors import ConfigError, DatasetError


def _coco(tmp_path, images, annotations, categories=None, name="ann.json"):
    cats = [{"id": 1, "name": "cat"}] if categories is None else categories
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return path


def _problems(ds, action=None):
    return [p for p in ds.problems if action is None or p.action == action]


def _huge_header_png(path, width, height):
    """A valid 4×4 PNG whose IHDR claims ``width``×``height``: tiny file, huge declared size."""
    save(path, np.zeros((4, 4), np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


# ------------------------------------------------------------------------- 4: duplicates


def test_coco_duplicate_image_id_keeps_first(tmp_path):
    save(tmp_path / "a.png", rgb(20, 20, 0))
    save(tmp_path / "b.png", rgb(20, 20, 1))
    ann = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [2, 2, 5, 5]}]
    path = _coco(tmp_path, [{"id": 7, "file_name": "a.png"}, {"id": 7, "file_name": "b.png"}], ann)
    ds = read_coco(path)
    assert [s.id for s in ds] == ["a.png"]
    dup = [p for p in ds.problems if "duplicate image id 7" in p.problem]
    assert len(dup) == 1 and dup[0].action == "skipped" and "b.png" in dup[0].problem


def test_two_voc_files_for_one_image_count_once(tmp_path):
    root = make_voc(tmp_path, {"a.png": [("cat", (1, 1, 10, 10))]})
    (root / "Annotations" / "copy.xml").write_text(voc_xml("a.png", [("cat", (21, 21, 40, 40))]))
    ds = read_voc(root)
    assert len(ds) == 1 and int(ds[0].region.sum()) == 10 * 10  # a.xml (sorted first) kept
    dup = [p for p in ds.problems if "already annotated" in p.problem]
    assert len(dup) == 1 and dup[0].item.endswith("copy.xml") and dup[0].action == "skipped"


def test_csv_same_file_two_spellings_counted(tmp_path):
    save(tmp_path / "a.png", rgb(20, 20))
    (tmp_path / "b.csv").write_text(
        "image,label,xmin,ymin,xmax,ymax\na.png,cat,0,0,5,5\n./a.png,cat,10,10,15,15\n"
    )
    ds = read_csv(tmp_path / "b.csv")
    assert len(ds) == 1 and int(ds[0].region.sum()) == 25
    assert len([p for p in ds.problems if "already annotated" in p.problem]) == 1


# ------------------------------------------------------------------------- 5/14: encodings, types


def test_csv_latin1_is_one_line_error_and_bom_is_accepted(tmp_path):
    save(tmp_path / "a.png", rgb(20, 20))
    text = "image,label,xmin,ymin,xmax,ymax\na.png,café,0,0,5,5\n"
    (tmp_path / "latin.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin\.csv: line 2: not UTF-8"):
        read_csv(tmp_path / "latin.csv")
    (tmp_path / "bom.csv").write_bytes(text.encode("utf-8-sig"))
    ds = read_csv(tmp_path / "bom.csv")
    assert ds.class_names == ["café"] and int(ds[0].region.sum()) == 25


def test_coco_not_utf8(tmp_path):
    save(tmp_path / "a.png", rgb(20, 20))
    path = _coco(tmp_path, [{"id": 1, "file_name": "a.png"}], [], [{"id": 1, "name": "chat"}])
    path.write_bytes(path.read_text().replace("chat", "ch\xe2t").encode("latin-1"))
    with pytest.raises(DatasetError, match=r"ann\.json: line 1: not UTF-8"):
        read_coco(path)


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ({"size": [20, 20], "counts": "0a~"}, "invalid character"),
        ({"size": [20, 20], "counts": "P"}, "truncated"),  # continuation bit, then nothing
        ({"size": [20, 20], "counts": 5}, "'counts' must be"),
        ({"size": [20, 20], "counts": ["a", 3]}, "'counts' must be"),
        ({"size": [-3, 20], "counts": [1]}, "'size' must be"),
        ({"size": "20x20", "counts": [1]}, "'size' must be"),
        ({"counts": [1]}, "'size' must be"),
        ({"size": [20, 20], "counts": [500]}, "do not fit"),
    ],
)
def test_malformed_rle_is_one_line_error(tmp_path, segmentation, message):
    save(tmp_path / "a.png", rgb(20, 20))
    ann = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation}]
    path = _coco(tmp_path, [{"id": 1, "file_name": "a.png"}], ann)
    with pytest.raises(DatasetError, match=message) as err:
        read_coco(path)
    assert "ann.json" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("images", "annotation", "categories", "message"),
    [
        (None, {"category_id": [1]}, None, "'category_id' must be an integer"),
        (None, {"image_id": {"x": 1}}, None, "'image_id' must be an integer"),
        (None, {"bbox": ["a", 1, 2, 3]}, None, "not a number"),
        (None, {"bbox": {"x": 1}}, None, "bbox must be"),
        (None, {"segmentation": [[1, 2, [3], 4, 5, 6]]}, None, "not a number"),
        (None, {"segmentation": "poly"}, None, "unsupported segmentation"),
        ([{"id": [1], "file_name": "a.png"}], {}, None, "'id' must be an integer"),
        ([{"id": 1, "file_name": 12}], {}, None, "'file_name' must be a non-empty string"),
        ([{"id": 1, "file_name": "a.png", "width": "20"}], {}, None, "'width' must be a number"),
        (None, {}, [{"id": [1], "name": "cat"}], "'id' must be an integer"),
        (None, {}, [{"id": 1, "name": ["cat"]}], "'name' must be a string"),
        (None, {}, [{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}], "named both"),
    ],
)
def test_coco_wrong_types_are_one_line_errors(tmp_path, images, annotation, categories, message):
    save(tmp_path / "a.png", rgb(20, 20))
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], **annotation}
    imgs = [{"id": 1, "file_name": "a.png"}] if images is None else images
    with pytest.raises(DatasetError, match=message) as err:
        read_coco(_coco(tmp_path, imgs, [ann], categories))
    assert "ann.json" in str(err.value)


@pytest.mark.parametrize(
    ("box_text", "message"),
    [
        ("[0, 0, Infinity, 5]", "Infinity is not a valid number"),
        ("[0, NaN, 5, 5]", "NaN is not a valid number"),
        ("[0, 0, 5]", "4 finite numbers"),
        ('[0, 0, "5", 5]', "4 finite numbers"),
        ("[0, 0, 1e999, 5]", "4 finite numbers"),
    ],
)
def test_bad_tells_json(tmp_path, box_text, message):
    root = make_voc(tmp_path, {"a.png": [("cat", (1, 1, 10, 10))]})
    (root / "tells.json").write_text('{"images": {"a.png": [{"box": ' + box_text + "}]}}")
    with pytest.raises(DatasetError, match=message) as err:
        read_voc(root)
    assert "tells.json" in str(err.value)


def test_malformed_xml_keeps_expat_reason(tmp_path):
    root = make_voc(tmp_path, {"a.png": [("cat", (1, 1, 10, 10))]})
    (root / "Annotations" / "b.xml").write_text("<annotation>\n<a>\n</annotation>")
    with pytest.raises(DatasetError, match=r"b\.xml: malformed XML \(mismatched tag: line 3"):
        read_voc(root)
    (root / "Annotations" / "b.xml").write_bytes(
        "<annotation><filename>é.png</filename></annotation>".encode("latin-1")
    )
    with pytest.raises(DatasetError, match=r"b\.xml: malformed XML \(not well-formed"):
        read_voc(root)


# ------------------------------------------------------------------------- 9: paths outside


def test_paths_outside_the_root_are_skipped(tmp_path):
    secret = save(tmp_path / "secret.png", rgb(80, 100, 9))
    voc = make_voc(tmp_path / "voc", {"a.png": [("cat", (1, 1, 10, 10))]})
    for stem, name in (("up", "../../secret.png"), ("abs", str(secret))):
        (voc / "Annotations" / f"{stem}.xml").write_text(voc_xml(name, [("cat", (1, 1, 9, 9))]))
    ds = read_voc(voc)
    assert [s.id for s in ds] == ["a.png"]
    outside = [p for p in ds.problems if "outside the dataset root" in p.problem]
    assert sorted(p.item for p in outside) == ["Annotations/abs.xml", "Annotations/up.xml"]
    linked = tmp_path / "linked"  # a VOC root whose JPEGImages links to an image store: fine
    (linked / "Annotations").mkdir(parents=True)
    (linked / "JPEGImages").symlink_to(voc / "JPEGImages")
    (linked / "Annotations" / "a.xml").write_text(voc_xml("a.png", [("cat", (1, 1, 10, 10))]))
    assert [s.id for s in read_voc(linked)] == ["a.png"]

    data = tmp_path / "data"
    save(data / "a.png", rgb(20, 20))
    (data / "link.png").symlink_to(secret)
    imgs = [
        {"id": 1, "file_name": "a.png"},
        {"id": 2, "file_name": str(secret)},
        {"id": 3, "file_name": "../secret.png"},
        {"id": 4, "file_name": "link.png"},
    ]
    anns = [{"id": k, "image_id": k, "category_id": 1, "bbox": [1, 1, 5, 5]} for k in (1, 2, 3, 4)]
    ds = read_coco(_coco(data, imgs, anns))
    assert [s.id for s in ds] == ["a.png"]
    assert len([p for p in ds.problems if "outside" in p.problem]) == 3

    (data / "b.csv").write_text(
        f"image,label,xmin,ymin,xmax,ymax\na.png,cat,0,0,5,5\n../secret.png,cat,0,0,5,5\n"
        f"{secret},cat,0,0,5,5\nlink.png,cat,0,0,5,5\na\x00.png,cat,0,0,5,5\n"
    )
    ds = read_csv(data / "b.csv")
    assert [s.id for s in ds] == ["a.png"]
    assert len([p for p in ds.problems if "outside" in p.problem]) == 3
    assert [p.item for p in ds.problems if "cannot be resolved" in p.problem] == ["a\x00.png"]

    folder = tmp_path / "folder"
    save(folder / "cat" / "a.png", rgb(20, 20))
    (folder / "cat" / "b.png").symlink_to(secret)
    ds = read_imagefolder(folder)
    assert [s.id for s in ds] == ["cat/a.png"]
    assert any(p.item == "cat/b.png" and "outside" in p.problem for p in ds.problems)


# ------------------------------------------------------------------------- 10: pixel cap


def test_pixel_cap_refuses_huge_header_before_decoding(tmp_path, monkeypatch):
    big = _huge_header_png(tmp_path / "big.png", 10_000, 10_000)  # 100 MP declared, ~70 bytes
    assert big.stat().st_size < 200 and MAX_PIXELS < 10_000 * 10_000
    with pytest.raises(DatasetError, match=r"big\.png.*exceeds the pixel cap of 50,000,000"):
        read_image(big)
    # above 2× Pillow's MAX_IMAGE_PIXELS Pillow itself refuses: still a one-line DatasetError
    bomb = _huge_header_png(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(DatasetError, match=r"bomb\.png.*decompression bomb"):
        read_image(bomb, max_pixels=10**12)
    small = save(tmp_path / "small.png", rgb(20, 30))
    assert read_image(small, max_pixels=600)[0].shape == (20, 30, 3)
    with pytest.raises(DatasetError, match="exceeds the pixel cap of 599"):
        read_image(small, max_pixels=599)
    monkeypatch.setenv("LEAKAUDIT_MAX_PIXELS", "599")
    with pytest.raises(DatasetError, match="exceeds the pixel cap of 599"):
        read_image(small)
    assert read_image(small, max_pixels=600)[0].shape == (20, 30, 3)  # the option wins
    monkeypatch.setenv("LEAKAUDIT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="LEAKAUDIT_MAX_PIXELS"):
        read_image(small)


def test_pixel_cap_in_readers_is_a_counted_skip(tmp_path):
    folder = tmp_path / "folder"
    save(folder / "cat" / "a.png", rgb(10, 10))
    save(folder / "cat" / "b.png", rgb(40, 40))
    with pytest.warns(UserWarning, match="b.png"):
        ds = read_imagefolder(folder, max_pixels=1000, size=8)
    assert [s.id for s in ds] == ["cat/a.png"]
    assert any(p.item == "cat/b.png" and "pixel cap of 1,000" in p.problem for p in ds.problems)

    # VOC <size> is checked before the image is even opened
    voc = make_voc(tmp_path / "voc", {"a.png": [("cat", (1, 1, 10, 10))]})
    (voc / "Annotations" / "b.xml").write_text(
        voc_xml("a.png", [("cat", (1, 1, 9, 9))], 9000, 9000)
    )
    ds = read_voc(voc)
    cap = [p for p in ds.problems if "pixel cap" in p.problem]
    assert len(cap) == 1 and cap[0].item == "Annotations/b.xml" and "9000×9000" in cap[0].problem

    save(tmp_path / "c" / "a.png", rgb(20, 20))
    save(tmp_path / "c" / "b.png", rgb(20, 20))
    imgs = [
        {"id": 1, "file_name": "a.png", "width": 20, "height": 20},
        {"id": 2, "file_name": "b.png", "width": 100_000, "height": 100_000},
    ]
    huge_rle = {"size": [100_000, 100_000], "counts": [0, 10**10]}  # tried to allocate 9.3 GiB
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": huge_rle},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]},
    ]
    ds = read_coco(_coco(tmp_path / "c", imgs, anns))
    assert [s.id for s in ds] == ["a.png"] and int(ds[0].region.sum()) == 25
    cap = sorted(p.problem.split(" ")[0] for p in ds.problems if "pixel cap" in p.problem)
    assert cap == ["RLE", "width"]


# ------------------------------------------------------------------------- 11: huge tells


def test_tell_covering_the_image_is_dropped(tmp_path):
    assert MAX_TELL_FRACTION == 0.25
    root = make_voc(
        tmp_path, {"a.png": [("cat", (1, 1, 50, 40))], "b.png": [("cat", (1, 1, 9, 9))]}
    )
    tells = {"images": {"a.png": [{"box": [0, 0, 100, 80]}], "b.png": [{"box": [60, 50, 70, 60]}]}}
    (root / "tells.json").write_text(json.dumps(tells))
    ds = read_voc(root)
    a, b = ds[0], ds[1]
    assert a.tell is None and int(a.region.sum()) == 50 * 40  # sample kept, tell dropped
    assert b.tell is not None and int(b.tell.sum()) == 100
    dropped = _problems(ds, "tell dropped")
    assert len(dropped) == 1 and dropped[0].item == "a.png" and "100%" in dropped[0].problem
    # exactly at the limit (25 %) is still a tell
    tells["images"]["a.png"] = [{"box": [0, 0, 50, 40]}]
    (root / "tells.json").write_text(json.dumps(tells))
    assert read_voc(root)[0].tell is not None


# ------------------------------------------------------------------------- 12/13: EXIF, <size>


def _exif_png(path, arr, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, exif=exif.tobytes())
    return path


def test_exif_orientation_is_applied(tmp_path):
    arr = rgb(20, 40)  # stored 40 wide, 20 high
    img, conv = read_image(_exif_png(tmp_path / "r.png", arr, 6))  # 6: displayed turned 90° CW
    assert img.shape == (40, 20, 3) and "EXIF orientation 6" in conv
    np.testing.assert_array_equal(np.rint(img * 255).astype(np.uint8), np.rot90(arr, k=-1))
    img, conv = read_image(_exif_png(tmp_path / "n.png", arr, 1))
    assert img.shape == (20, 40, 3) and conv is None
    img, conv = read_image(_exif_png(tmp_path / "bad.png", arr, 9))  # invalid: shown as stored
    assert img.shape == (20, 40, 3) and conv == "invalid EXIF orientation 9 ignored"


def test_voc_size_mismatch_and_filename_fallback(tmp_path):
    root = make_voc(tmp_path, {"a.png": [("cat", (1, 1, 10, 10))]}, size=(80, 100))
    _exif_png(root / "JPEGImages" / "r.png", rgb(80, 100), 6)  # displayed 80 wide, 100 high
    ann = root / "Annotations"
    (ann / "r.xml").write_text(voc_xml("r.png", [("cat", (1, 1, 10, 10))], w=100, h=80))
    save(root / "JPEGImages" / "s.png", rgb(80, 100))
    (ann / "s.xml").write_text(voc_xml("s.png", [("cat", (1, 1, 10, 10))], w=50, h=80))
    save(root / "JPEGImages" / "t.png", rgb(80, 100))
    (ann / "t.xml").write_text(voc_xml("wrong.jpg", [("cat", (1, 1, 10, 10))]))
    ds = read_voc(root, size=16)
    assert [s.id for s in ds] == ["a.png", "t.png"]
    text = {p.item: (p.problem, p.action) for p in ds.problems}
    assert "annotation says 100×80 but the image is 80×100 (rotated" in text["r.png"][0]
    assert "annotation says 50×80 but the image is 100×80;" in text["s.png"][0]
    assert text["r.png"][1] == text["s.png"][1] == "skipped"
    assert text["Annotations/t.xml"] == (
        "<filename> wrong.jpg not found; used t.png",
        "used fallback",
    )
    (ann / "r.xml").write_text(voc_xml("r.png", [("cat", (1, 1, 10, 10))], w=80, h=100))
    assert "r.png" in [s.id for s in read_voc(root, size=16)]  # displayed size declared: kept


# ------------------------------------------------------------------------- issue 16: detection


def test_detect_format_and_voc_refused_as_imagefolder(tmp_path):
    voc = make_voc(tmp_path / "voc", {"a.png": [("cat", (1, 1, 10, 10))]})
    save(tmp_path / "folder" / "cat" / "a.png", rgb(20, 20))
    save(tmp_path / "c" / "a.png", rgb(20, 20))
    coco = _coco(tmp_path / "c", [{"id": 1, "file_name": "a.png"}], [])
    csv_path = tmp_path / "c" / "b.csv"
    csv_path.write_text("image,label,xmin,ymin,xmax,ymax\na.png,cat,0,0,5,5\n")
    got = {p.name: detect_format(p) for p in (voc, tmp_path / "folder", coco, csv_path)}
    assert got == {"voc": "voc", "folder": "imagefolder", "ann.json": "coco", "b.csv": "csv"}
    assert read_dataset(csv_path).class_names == ["cat"]
    assert len(read_dataset(voc, None, mode="crop", size=16)) == 1
    with pytest.raises(DatasetError, match="--format voc"):
        read_imagefolder(voc)
    with pytest.raises(DatasetError, match="--format voc"):
        read_dataset(voc, "imagefolder")
    (tmp_path / "x.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    for bad, why in (("x.txt", "pass --format"), ("empty", "pass --format"), ("no", "not found")):
        with pytest.raises(DatasetError, match=why):
            detect_format(tmp_path / bad)
    make_voc(tmp_path / "devkit" / "VOC2007", {"a.png": [("cat", (1, 1, 10, 10))]})
    with pytest.raises(DatasetError, match="VOC folder inside"):
        detect_format(tmp_path / "devkit")


# ------------------------------------------------------------------------- ReadOptions


def test_read_options_object_equals_keywords(tmp_path):
    root = make_voc(
        tmp_path / "voc", {"a.png": [("cat", (11, 11, 30, 30)), ("dog", (41, 21, 80, 70))]}
    )
    kw = read_voc(root, mode="crop", size=16, margin=0.0)
    obj = read_voc(root, options=ReadOptions(mode="crop", size=16, margin=0.0))
    mixed = read_dataset(root, "voc", options=ReadOptions(mode="crop", size=16), margin=0.0)
    for other in (obj, mixed):
        assert [s.id for s in other] == [s.id for s in kw] == ["a.png#0", "a.png#1"]
        for s, t in zip(kw, other, strict=True):
            np.testing.assert_array_equal(s.image, t.image)
            np.testing.assert_array_equal(s.region, t.region)
    assert read_voc(root, options=ReadOptions(mode="crop", size=16, margin=0.5))[0].region.sum() < (
        kw[0].region.sum()
    )  # the margin really travels through the options object
    save(tmp_path / "folder" / "cat" / "a.png", rgb(20, 20))
    with pytest.raises(ConfigError, match="imagefolder reader: mode"):
        read_imagefolder(tmp_path / "folder", options=ReadOptions(mode="crop"))
    with pytest.raises(ConfigError, match="imagefolder reader: margin"):
        read_dataset(tmp_path / "folder", "imagefolder", margin=0.1)


def test_non_utf8_file_name_is_read_and_tabulated(tmp_path):
    """A file name with a non-UTF-8 byte arrives as a lone surrogate; pandas tables backed by
    Arrow strings (pyarrow installed, e.g. with the ray extra) reject those, so the sample id
    is escaped once where samples are made: readable, unique, and the audit's table builds."""
    import os

    import pandas as pd

    from leakaudit.data.formats import read_dataset

    for cls in ("a", "b"):
        save(tmp_path / cls / "ok.png", rgb(8, 8))
    with open(os.path.join(os.fsencode(tmp_path / "a"), b"bad\xff.png"), "wb") as f:
        Image.fromarray(rgb(8, 8)).save(f, format="PNG")
    ds = read_dataset(str(tmp_path), "imagefolder", size=8)
    ids = sorted(s.id for s in ds)
    assert len(ids) == 3 and any(i.endswith("bad\\xff.png") for i in ids), ids
    table = pd.DataFrame({"id": ids})
    assert table["id"].str.contains("xff").sum() == 1
