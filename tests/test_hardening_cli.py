"""Issue 10, command-line side: no exception exits 1, options are checked before any work, no
byte is written outside --out, cached numbers equal --no-cache numbers, the limit keeps every
class, and a --classes order that contradicts the model card is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from leakaudit.auditing.pipeline import stratified_limit, unrepresented
from leakaudit.cli import run
from leakaudit.data.images import save_png
from leakaudit.data.samples import Dataset, Sample
from leakaudit.data.synthetic import make_shapes
from leakaudit.models.load import save_checkpoint
from leakaudit.models.zoo import SmallCNN

SIZE = 24
CLASSES = "disc,square,triangle,cross"


class ColourNet(nn.Module):
    """A tiny model whose output depends on channel order and pixel position."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.head(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1))


class ColourNetSquared(ColourNet):
    """Same weights as ColourNet, different forward code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x * x))
        return self.head(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hard")
    data = make_shapes(16, seed=1, size=SIZE)
    for s in data:
        name = data.class_names[s.label]
        save_png(s.image, root / "data" / name / f"{s.id}.png")
        mask = np.repeat(s.region[..., None], 3, -1).astype(np.float32)
        save_png(mask, root / "masks" / name / f"{s.id}.png")
    a, b = ColourNet(), ColourNetSquared()
    b.load_state_dict(a.state_dict())
    torch.jit.script(a).save(str(root / "a.pt"))
    torch.jit.script(b).save(str(root / "b.pt"))
    return root


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        run(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _audit_args(ws: Path, model: str, out: Path, *extra: str) -> list[str]:
    return ["audit", "--data", str(ws / "data"), "--masks", str(ws / "masks"), "--model",
            str(ws / model), "--classes", CLASSES, "--methods", "saliency", "--quiet",
            "--out", str(out), "--cache-dir", str(ws / "cache"), *extra]  # fmt: skip


def _quick_config(tmp_path: Path, **extra: str) -> Path:
    cfg = tmp_path / "quick.toml"
    lines = ["discovery = false", "sanity = false", "ablation = false"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "-1"], "--seed"),
        (["--lime-samples", "0"], "--lime-samples"),
        (["--limit", "0"], "--limit"),
        (["--limit", "-1"], "--limit"),
        (["--max-per-class", "0"], "--max-per-class"),
        (["--size", "0"], "--size"),
        (["--methods", ","], "--methods"),
        (["--mean", "0.5,0.5"], "--mean"),
        (["--preprocess", "imagenet", "--mean", "0.5,0.5,0.5"], "not both"),
    ],
)
def test_bad_options_exit_2_before_any_work(ws, tmp_path, capsys, extra, message) -> None:
    out = tmp_path / "never"
    code, _, err = _run(_audit_args(ws, "a.pt", out, *extra), capsys)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('limit = "ten"', "limit: expected a whole number"),
        ("seed = 1.5", "seed: expected a whole number"),
        ('lime_segments = "many"', "lime_segments: expected a whole number"),
        ("thresholds = { tell_top_rate = [0.6, 0.5] }", "warn ≤ fail"),
        ("thresholds = { nonsense = [0.1, 0.2] }", "unknown threshold"),
    ],
)
def test_config_values_of_the_wrong_type_exit_2(ws, tmp_path, capsys, config, message) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(config + "\n")
    code, _, err = _run(_audit_args(ws, "a.pt", tmp_path / "o", "--config", str(cfg)), capsys)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_out_that_is_a_file_is_refused_before_the_audit(ws, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    called = []
    monkeypatch.setattr("leakaudit.auditing.pipeline.run_audit", lambda *a, **k: called.append(1))
    for out in (blocker, blocker / "sub"):
        code, _, err = _run(_audit_args(ws, "a.pt", out), capsys)
        assert code == 2 and "--out" in err and "Traceback" not in err, err
    assert not called  # refused before reading data or the model


def test_unexpected_exception_is_one_line_exit_2(ws, tmp_path, capsys, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("something deep broke\nsecond line")

    monkeypatch.setattr("leakaudit.auditing.pipeline.run_audit", boom)
    code, _, err = _run(_audit_args(ws, "a.pt", tmp_path / "o"), capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "RuntimeError: something deep broke" in err and "--debug" in err
    code, _, err = _run(["--debug", *_audit_args(ws, "a.pt", tmp_path / "o")], capsys)
    assert code == 2 and "Traceback" in err  # --debug shows where


def _summary_numbers(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    m = s["models"]["model"]
    return {"acc": m["eval_accuracy"], "sal": m["methods"]["saliency"]["outside_mass"]}


def test_cached_numbers_equal_uncached_for_code_and_channel_order(ws, tmp_path, capsys) -> None:
    """Issue 10.3: same weights with other forward code, or BGR instead of RGB, must not be
    served the first model's maps from the cache."""
    quick = _quick_config(tmp_path)
    runs = [("a.pt", []), ("b.pt", []), ("a.pt", ["--channel-order", "BGR"])]
    runs.append(("a.pt", ["--mean", "0.2,0.4,0.6", "--std", "0.5,0.5,0.5"]))
    cached, fresh = [], []
    for i, (model, extra) in enumerate(runs):
        for store, flag in ((cached, []), (fresh, ["--no-cache"])):
            out = tmp_path / f"run{i}{'n' if flag else 'c'}"
            args = _audit_args(ws, model, out, "--config", str(quick), *extra, *flag)
            code, _, err = _run(args, capsys)
            assert code in (0, 1, 3), err
            store.append(_summary_numbers(out))
    assert cached == fresh
    assert len({json.dumps(c) for c in cached}) == len(runs)  # each setting differs


def test_checkpoint_cannot_make_the_audit_import_code(ws, tmp_path, capsys) -> None:
    """Issue 10.1 through the whole pipeline: arch named by the checkpoint, not by --arch."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "import torch\nclass Net(torch.nn.Module):\n    pass\n"
    )
    model = SmallCNN(4)
    ckpt = tmp_path / "ckpt.pt"
    save_checkpoint(model, f"{evil}:Net", {}, CLASSES.split(","), {"input_size": SIZE}, {}, ckpt)
    code, _, err = _run(_audit_args(ws, "a.pt", tmp_path / "o", "--model", str(ckpt)), capsys)
    assert code == 2 and "--arch" in err and "Traceback" not in err, err
    assert not marker.exists()


def test_classes_contradicting_the_model_card_need_force(ws, tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = SmallCNN(4, width=4)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(model, "small_cnn", {"width": 4}, CLASSES.split(","),
                    {"input_size": SIZE}, {}, ckpt)  # fmt: skip
    quick = _quick_config(tmp_path)
    args = ["audit", "--data", str(ws / "data"), "--model", str(ckpt), "--methods", "saliency",
            "--quiet", "--config", str(quick), "--no-cache"]  # fmt: skip
    swapped = "square,disc,triangle,cross"
    code, _, err = _run([*args, "--out", str(tmp_path / "o1"), "--classes", swapped], capsys)
    assert code == 2 and "contradicts" in err and "--force-classes" in err, err
    # Accepted, the audit runs to its end. With discovery, sanity and ablation off, no tells.json
    # and no masks, no condition can decide: the verdict is inconclusive, exit 3 (not 2: refused).
    code, _, err = _run([*args, "--out", str(tmp_path / "o2"), "--classes", swapped,
                         "--force-classes"], capsys)  # fmt: skip
    assert code == 3, err
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["class_names"] == swapped.split(",")  # the forced order, not the card's
    code, _, err = _run([*args, "--out", str(tmp_path / "o3"), "--classes", CLASSES], capsys)
    assert code == 3, err  # agreeing with the card is fine: the same audit, the same exit


def _toy(counts: dict[str, int]) -> Dataset:
    samples, names = [], list(counts)
    for k, (name, n) in enumerate(counts.items()):
        for i in range(n):
            img = np.zeros((4, 4, 3), np.float32)
            samples.append(Sample(img, k, np.zeros((4, 4), bool), f"{name}{i}"))
    return Dataset(samples, names)


def test_stratified_limit_keeps_every_class() -> None:
    """Issue 10.7: `--limit 5` used to give Platelets 0, RBC 5, WBC 0."""
    data = _toy({"Platelets": 3, "RBC": 90, "WBC": 7})
    for limit in (3, 5, 10, 50):
        got = stratified_limit(data, limit, seed=0)
        counts = got.counts()
        assert len(got) <= limit and all(v >= 1 for v in counts.values()), (limit, counts)
        assert not unrepresented(data, got)
    got = stratified_limit(data, 50, seed=0)
    assert got.counts()["RBC"] > got.counts()["WBC"] > got.counts()["Platelets"] - 1
    two = stratified_limit(data, 2, seed=0)  # fewer slots than classes: the largest classes
    assert two.counts() == {"Platelets": 0, "RBC": 1, "WBC": 1}
    assert unrepresented(data, two) == ["Platelets"]
    assert [s.id for s in stratified_limit(data, 5, seed=3)] == [
        s.id for s in stratified_limit(data, 5, seed=3)
    ]


def _coco_with_escaping_names(src: Path, victim: Path) -> Path:
    img = np.full((32, 32, 3), 0.5, np.float32)
    save_png(img, src / "ok.png")
    save_png(img, victim)
    images = [
        {"id": 1, "file_name": "ok.png", "width": 32, "height": 32},
        {"id": 2, "file_name": str(victim), "width": 32, "height": 32},
        {"id": 3, "file_name": f"../{victim.name}", "width": 32, "height": 32},
    ]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 12, 12]} for i in (1, 2, 3)]
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}
    path = src / "ann.json"
    path.write_text(json.dumps(coco))
    return path


def test_inject_never_writes_outside_out(tmp_path, capsys) -> None:
    """Issue 10.2: an absolute or ../ COCO file_name must not make inject write beside or over
    the source data."""
    src = tmp_path / "src"
    victim = tmp_path / "victim.png"
    ann = _coco_with_escaping_names(src, victim)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = tmp_path / "copy"
    code, _, err = _run(["inject", "--data", str(ann), "--out", str(out), "--mode", "image",
                         "--tell-size", "4"], capsys)  # fmt: skip
    assert code in (0, None), err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {p: after[p] for p in before} == before  # nothing existing was changed
    new = [p for p in after if p not in before]
    assert new and all(out in p.parents for p in new), new
    assert (out / "ok.png").exists()
