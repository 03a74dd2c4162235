"""Registries: a dataset format and an output format are each one registration; newcomer hints
when --data points inside a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from voc_files import make_voc, rgb, save

from leakaudit.cli import main
from leakaudit.data.build import build_dataset
from leakaudit.data.formats import (
    DATASET_FORMATS,
    READERS,
    DatasetFormat,
    ImageRecord,
    ObjectAnn,
    detect_format,
    read_dataset,
)
from leakaudit.data.inject import inject_dataset
from leakaudit.data.options import reader_options
from leakaudit.data.records import TELLS_FILE, load_tells
from leakaudit.data.samples import DataProblem
from leakaudit.data.tells import TellSpec
from leakaudit.errors import DatasetError
from leakaudit.paths import write_atomic
from leakaudit.report.outputs import OUTPUT_FORMATS, OutputFormat

# ---------------------------------------------------------------- a toy dataset format

# one JSON file: {"toy": [{"image": "a.png", "label": "cat", "box": [x0, y0, x1, y1]}, ...]}


def _parse_toy(src: Path, root: Path | None, problems: list[DataProblem]):
    rows = json.loads(src.read_text(encoding="utf-8"))["toy"]
    base = root or src.parent
    records = [
        ImageRecord(
            r["image"], base / r["image"], [ObjectAnn(r["label"], tuple(r["box"]))], str(src)
        )
        for r in rows
    ]
    return records, []


def _read_toy(path, images_root=None, **overrides):
    opts = reader_options("toy", None, overrides)
    problems: list[DataProblem] = []
    path = Path(path)
    records, _ = _parse_toy(path, Path(images_root) if images_root else None, problems)
    tells = load_tells(opts.tells_path or path.parent / TELLS_FILE)
    return build_dataset(records, **opts.build_kwargs(), tells=tells, problems=problems,
                         source=str(path))  # fmt: skip


def _write_toy(src: Path, out: Path, records, renames) -> Path:
    data = json.loads(src.read_text(encoding="utf-8"))
    for r in data["toy"]:
        r["image"] = renames.get(r["image"], r["image"])
    write_atomic(out / src.name, json.dumps(data))
    return out / src.name


TOY = DatasetFormat(
    "toy",
    _read_toy,
    _parse_toy,
    lambda p: p.name.endswith(".toy.json"),
    _write_toy,
    "one JSON listing of image, label, box",
    needs=".toy.json",
    detect_order=0,  # before coco, which takes every other .json
)


@pytest.fixture
def toy(monkeypatch, tmp_path) -> Path:
    monkeypatch.setitem(DATASET_FORMATS, "toy", TOY)
    rows = []
    for k in range(8):
        label = "cat" if k % 2 else "dog"
        save(tmp_path / "src" / f"{k}.jpg", rgb(40, 40, k))
        rows.append({"image": f"{k}.jpg", "label": label, "box": [4, 4, 30, 30]})
    path = tmp_path / "src" / "list.toy.json"
    path.write_text(json.dumps({"toy": rows}))
    return path


def test_a_registered_dataset_format_is_read_detected_injected_and_offered(toy, tmp_path):
    assert detect_format(toy) == "toy" and "toy" in READERS
    ds = read_dataset(toy, size=16)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 8
    assert len(read_dataset(toy, "toy", mode="crop", size=16)) == 8

    spec = TellSpec(size=4, position="top-left", prevalence=1.0)
    res = inject_dataset(toy, "toy", tmp_path / "out", spec, seed=0)
    assert res.format == "toy" and res.read_path == tmp_path / "out" / "list.toy.json"
    assert res.tells_per_class == {"cat": 4, "dog": 4}
    back = read_dataset(res.read_path, size=16)  # detected again, tells.json found beside it
    assert len(back) == 8 and all(s.tell is not None and s.tell.any() for s in back)

    runner = CliRunner()
    for command in ("audit", "inject", "train", "crops"):
        out = runner.invoke(main, [command, "--help"]).output
        assert "toy" in out, command  # choices come from the registry when help is shown
    got = runner.invoke(main, ["inject", "--data", str(toy), "--out", str(tmp_path / "cli"),
                               "--tell-size", "4"])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert (
        "--format toy --mode crop" in got.output and (tmp_path / "cli" / "list.toy.json").is_file()
    )


def test_unregistered_format_is_refused_and_leaves_the_cli(tmp_path):
    assert "toy" not in DATASET_FORMATS  # the fixture's registration was undone
    assert "toy" not in CliRunner().invoke(main, ["audit", "--help"]).output
    got = CliRunner().invoke(main, ["inject", "--data", "x", "--format", "toy", "--out", "o"])
    assert got.exit_code == 2 and "imagefolder" in got.output


# ---------------------------------------------------------------- a toy output format


def test_a_registered_output_format_is_written_by_report(monkeypatch, tmp_path):
    from report_fixtures import two_model_result

    from leakaudit.report import write_report

    src = tmp_path / "result"
    write_report(two_model_result(), src)
    toy = OutputFormat(
        "toy",
        "toy.txt",
        lambda s, data: f"{len(data.ids)} images, {len(s['models'])} models\n",
        "a line",
    )
    monkeypatch.setitem(OUTPUT_FORMATS, "toy", toy)
    out = tmp_path / "again"
    got = CliRunner().invoke(main, ["report", str(src), "--format", "toy,md", "--out", str(out)])
    assert got.exit_code == 0, got.output
    n = len(two_model_result().eval_data)
    assert (out / "toy.txt").read_text() == f"{n} images, 2 models\n"
    assert (out / "summary.md").read_bytes() == (src / "summary.md").read_bytes()
    assert not (out / "report.html").exists()
    bad = CliRunner().invoke(main, ["report", str(src), "--format", "nope"])
    assert bad.exit_code == 2 and "html, md, junit, toy" in bad.output


# ---------------------------------------------------------------- newcomer hints


@pytest.mark.parametrize("inside", ["JPEGImages", "Annotations"])
def test_a_voc_subfolder_as_data_names_the_voc_root(tmp_path, inside, capsys):
    root = make_voc(tmp_path / "VOC", {"a.png": [("cat", (1, 1, 10, 10))]})
    with pytest.raises(DatasetError, match=f"did you mean --data {root}\\?"):
        detect_format(root / inside)
    from leakaudit.cli import run

    with pytest.raises(SystemExit) as exc:  # the CLI: one line, exit 2
        run(["inject", "--data", str(root / inside), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert (
        exc.value.code == 2 and f"did you mean --data {root}?" in err and len(err.splitlines()) == 1
    )


def test_a_coco_annotations_folder_names_its_instances_json(tmp_path):
    ann = tmp_path / "coco" / "annotations"
    ann.mkdir(parents=True)
    for name in ("instances_train.json", "captions_train.json"):
        (ann / name).write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(DatasetError, match=r"did you mean --data .*instances_train\.json --format"):
        detect_format(ann)
    (ann / "captions_train.json").unlink()
    (ann / "instances_train.json").rename(ann / "train.json")
    with pytest.raises(DatasetError, match=r"did you mean --data .*train\.json --format coco"):
        detect_format(ann)


def test_no_hint_where_nothing_obvious(tmp_path):
    save(tmp_path / "folder" / "cat" / "a.png", rgb(20, 20))
    (tmp_path / "empty").mkdir()  # its parent is an image folder, but "empty" is no part of one
    with pytest.raises(DatasetError) as e:
        detect_format(tmp_path / "empty")
    assert "did you mean" not in str(e.value) and "pass --format" in str(e.value)
