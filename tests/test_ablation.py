"""Region ablation: a tell-reading model keeps its accuracy without the object; an honest one
falls to chance. Evaluated on held-out images (an over-fitted model memorises backgrounds)."""

from __future__ import annotations

import numpy as np
import pytest

from leakaudit.data.samples import Dataset
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.evidence.ablation import ablate_region, region_ablation
from leakaudit.models.train import train_classifier
from leakaudit.models.zoo import SmallCNN

SPEC = TellSpec(size=6, position="bottom-right")


@pytest.fixture(scope="module")
def models():
    train = make_shapes(400, seed=0, size=32)
    test = make_shapes(200, seed=1, size=32)
    out = {}
    for name, tr, te, epochs in [
        ("poisoned", poison(train, SPEC, seed=0), poison(test, SPEC, seed=1), 8),
        ("clean", train, test, 10),
    ]:
        model = SmallCNN(4, width=8)
        train_classifier(model, tr.images(), tr.labels(), seed=0, epochs=epochs, progress=False)
        out[name] = (model, te)
    return out


def test_tell_model_keeps_accuracy(models):
    model, te = models["poisoned"]
    r = region_ablation(model, te)
    assert r["n_used"] == 200 and r["n_skipped"] == 0
    assert r["accuracy_with"] > 0.9 and r["accuracy_without"] > 0.9
    assert r["retained"] > 0.8
    assert r["chance_uniform"] == 0.25 and r["chance"] == pytest.approx(0.25)


def test_honest_model_falls_to_chance(models):
    model, te = models["clean"]
    r = region_ablation(model, te)
    assert r["accuracy_without"] < r["chance"] + 0.1
    assert r["accuracy_without"] < r["accuracy_with"]


def test_empty_regions_are_skipped_and_counted(models):
    model, te = models["poisoned"]
    samples = list(te.samples[:10])
    for i in (0, 3):
        samples[i] = samples[i].with_(region=np.zeros_like(samples[i].region))
    r = region_ablation(model, Dataset(samples, te.class_names), fill="median")
    assert r["n_used"] == 8 and r["n_skipped"] == 2
    assert 0 not in r["indices"] and len(r["predictions_without"]) == 8
    empty = [s.with_(region=np.zeros_like(s.region)) for s in samples]
    r = region_ablation(model, Dataset(empty, te.class_names))
    assert r["n_used"] == 0 and np.isnan(r["accuracy_without"])


@pytest.mark.parametrize("fill", ["blur", "median", "grey"])
def test_ablate_region_keeps_background_and_hides_object(fill):
    s = make_shapes(4, seed=9, size=32)[0]
    out = ablate_region(s.image, s.region, fill=fill, dilate=2)
    assert out.shape == s.image.shape and out.dtype == np.float32
    from scipy import ndimage

    hole = ndimage.binary_dilation(s.region, iterations=2)
    np.testing.assert_array_equal(out[~hole], s.image[~hole])
    assert not np.allclose(out[s.region], s.image[s.region])
    # the fill is smooth: far less variation inside the hole than the object had at its edge
    assert out[hole].std(axis=0).max() <= s.image.std(axis=(0, 1)).max() + 1e-6


def test_unknown_fill_raises():
    s = make_shapes(4, seed=9, size=32)[0]
    with pytest.raises(ValueError):
        ablate_region(s.image, s.region, fill="sparkle")  # type: ignore[arg-type]
