"""Defects the hostile round (examples/hostile_round.py) found after the first fixes: a FIFO in a
dataset hung the audit; a config whose [audit] is not a table, or that is not UTF-8, ended in an
"unexpected" error; a config value a flag overrides went unchecked; a mistyped --layer set
Grad-CAM aside (INCONCLUSIVE) instead of stopping."""

from __future__ import annotations

import os

import pytest
import torch

from leakaudit.auditing.pipeline import AuditOptions
from leakaudit.cli import run
from leakaudit.data.images import read_image, save_png
from leakaudit.data.synthetic import make_shapes
from leakaudit.errors import ConfigError, DatasetError
from leakaudit.models.zoo import SmallCNN

BASE = {"data": "tests", "format": "imagefolder", "model": "m.pt"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_like_an_image_is_refused_not_opened(tmp_path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match="not a regular file"):
        read_image(fifo)  # opening it would wait for a writer forever


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"audit = 5\n", "[audit] must be a table of options"),
        (b"limit = 3 # caf\xe9\n", "not UTF-8"),
        (b"size = { a = 1 }\n", "size: expected a whole number"),  # --size 16 replaces it
        (b'methods = "saliency"\n', "methods: expected a list of strings"),
    ],
)
def test_config_file_is_checked_whole_even_where_a_flag_wins(tmp_path, raw, message) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(raw)
    with pytest.raises(ConfigError) as e:
        AuditOptions.merged(str(cfg), {**BASE, "size": 16, "methods": ["saliency"]})
    assert message in str(e.value) and str(cfg) in str(e.value)


def test_config_that_is_a_folder_is_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        AuditOptions.merged(str(tmp_path), dict(BASE))


def test_a_mistyped_layer_stops_before_the_audit(tmp_path, capsys) -> None:
    ds = make_shapes(12, seed=0, size=24, n_classes=2)
    for i, s in enumerate(ds.samples):
        folder = tmp_path / "data" / ds.class_names[s.label]
        folder.mkdir(parents=True, exist_ok=True)
        save_png(s.image, folder / f"{i}.png")
    torch.manual_seed(0)
    model = torch.jit.script(SmallCNN(n_classes=len(ds.class_names)).eval())
    model.save(str(tmp_path / "m.pt"))
    args = ["audit", "--data", str(tmp_path / "data"), "--model", str(tmp_path / "m.pt"),
            "--size", "24", "--methods", "gradcam", "--layer", "no.such.layer",
            "--out", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        run(args)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "--layer no.such.layer" in err and "not found" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "summary.json").exists()
