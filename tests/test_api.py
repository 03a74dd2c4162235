"""The public Python API (issue 12): an in-memory model on numpy arrays or a torch Dataset gives
the audit the CLI gives; the cheating model is caught, results write a report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_fixtures import CornerReader
from torch import nn

import leakaudit
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.errors import DatasetError


@pytest.fixture(scope="module")
def arrays():
    data = poison(make_shapes(24, seed=2, size=24), TellSpec(size=6), seed=0)
    images = np.stack([s.image for s in data])
    labels = data.labels()
    masks = np.stack([s.region for s in data])
    return images, labels, masks, data.class_names


QUICK = {"sanity": False, "ablation": False}


def test_audit_catches_the_cheat_from_numpy_and_torch(arrays, tmp_path) -> None:
    images, labels, masks, names = arrays
    result = leakaudit.audit(CornerReader(), (images, labels), ["saliency"], masks=masks,
                             class_names=names, **QUICK)  # fmt: skip
    audit = result.models["model"]
    assert audit.verdict == "leak" and audit.eval_accuracy == 1.0
    tensors = torch.utils.data.TensorDataset(
        torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels)
    )
    loader = torch.utils.data.DataLoader(tensors, batch_size=7)
    again = leakaudit.audit(CornerReader(), loader, ["saliency"], masks=masks, class_names=names,
                            **QUICK)  # fmt: skip
    a = audit.per_sample["outside_mass"].to_numpy()
    b = again.models["model"].per_sample["outside_mass"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6)
    html, summary = leakaudit.write_report(result, tmp_path / "out")
    written = json.loads(summary.read_text())
    model = written["models"]["model"]
    assert model["verdict"] == "leak" and written["schema_version"] == 2
    assert written["n_eval"] == len(images) == 24 and model["eval_accuracy"] == 1.0
    mean_outside = float(np.nanmean(a))  # the summary: the mean over images that have a region
    assert model["methods"]["saliency"]["outside_mass"] == pytest.approx(mean_outside, rel=1e-6)
    assert any(c["status"] == "FAIL" for c in model["conditions"])
    assert written["config"]["cache"] is True and written["config"]["format"] == "memory"
    page = html.read_text()
    assert "leakaudit audit: model" in page and "leak" in page.lower()


def test_compare_and_bad_input(arrays) -> None:
    images, labels, masks, _ = arrays
    blind = nn.Sequential(nn.Flatten(), nn.Linear(24 * 24 * 3, 4))
    res = leakaudit.compare(CornerReader(), blind, (images, labels), ["saliency"],
                            names=("cheat", "blind"), masks=masks, **QUICK)  # fmt: skip
    assert res.models["cheat"].verdict == "leak"
    assert any(r["score"] == "correct" for r in res.comparison)
    with pytest.raises(DatasetError, match=r"\[0, 1\]"):
        leakaudit.audit(CornerReader(), (images * 255, labels), ["saliency"])
    with pytest.raises(DatasetError, match="labels"):
        leakaudit.audit(CornerReader(), (images, labels[:-1]), ["saliency"])
