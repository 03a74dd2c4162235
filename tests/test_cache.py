"""AttributionCache: hits, misses, corrupt entries recomputed, and resume after interruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leakaudit.explain.base import Attribution, Explainer
from leakaudit.explain.cache import AttributionCache, cached_attribute, model_fingerprint
from leakaudit.explain.lime import Lime
from leakaudit.explain.stream import peak_rss_mb, stream_attributions
from leakaudit.models.zoo import SmallCNN


class Counting(Explainer):
    """A cheap deterministic explainer that records how many images it was asked for."""

    name = "counting"
    reduction = "test"

    def __init__(self, model: torch.nn.Module, fail_after: int | None = None) -> None:
        super().__init__(model, scale=2.0)
        self.calls: list[int] = []
        self.fail_after = fail_after

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        done = sum(self.calls)
        if self.fail_after is not None and done >= self.fail_after:
            raise KeyboardInterrupt  # the run is interrupted here
        self.calls.append(len(images))
        maps = images.mean(-1) * 2.0 + np.asarray(targets)[:, None, None]
        return Attribution(maps.astype(np.float32), self.name, self.reduction)


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return SmallCNN(2, width=4).eval()


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((10, 16, 16, 3), dtype=np.float32), rng.integers(0, 2, 10)


def test_hit_and_miss(tmp_path, model, data) -> None:
    images, targets = data
    cache = AttributionCache(tmp_path)
    mh = model_fingerprint(model)
    ex = Counting(model)
    a = cached_attribute(ex, mh, images, targets, cache, batch_size=4)
    assert ex.calls == [4, 4, 2] and cache.misses == 10
    b = cached_attribute(ex, mh, images, targets, cache, batch_size=4)
    assert ex.calls == [4, 4, 2] and cache.hits == 10  # nothing recomputed
    np.testing.assert_array_equal(a.maps, b.maps)
    # another target, model or parameter is a different key
    cached_attribute(ex, mh, images[:1], 1 - targets[:1], cache)
    cached_attribute(ex, "other-model", images[:1], targets[:1], cache)
    ex.params["scale"] = 3.0
    cached_attribute(ex, mh, images[:1], targets[:1], cache)
    assert ex.calls[3:] == [1, 1, 1]


def test_disabled_cache_always_computes(tmp_path, model, data) -> None:
    images, targets = data
    ex = Counting(model)
    cache = AttributionCache(tmp_path, enabled=False)
    for _ in range(2):
        cached_attribute(ex, "m", images, targets, cache)
    assert sum(ex.calls) == 20 and not any(tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["truncate", "garble", "empty", "swap"])
def test_corrupt_entry_is_recomputed(tmp_path, model, data, damage: str) -> None:
    images, targets = data
    cache = AttributionCache(tmp_path)
    ex = Counting(model)
    good = cached_attribute(ex, "m", images, targets, cache)
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 10
    victim = cache.path(ex.name, cache.key("m", images[3], targets[3], ex.describe()))
    raw = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(raw[: len(raw) // 2])
    elif damage == "garble":
        pos = len(raw) // 2
        victim.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1 :])
    elif damage == "empty":
        victim.write_bytes(b"")
    else:  # a valid entry of another image in this one's place (the checksum covers the key)
        other = cache.path(ex.name, cache.key("m", images[4], targets[4], ex.describe()))
        victim.write_bytes(other.read_bytes())
    again = cached_attribute(ex, "m", images, targets, cache)
    assert ex.calls[-1] == 1 and cache.corrupt == 1
    np.testing.assert_array_equal(again.maps, good.maps)
    cached_attribute(ex, "m", images[3:4], targets[3:4], cache)
    assert sum(ex.calls) == 11  # the repaired entry is now a hit


def test_resume_after_interruption(tmp_path, model, data) -> None:
    images, targets = data
    cache = AttributionCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cached_attribute(Counting(model, fail_after=6), "m", images, targets, cache, batch_size=3)
    assert len(list(tmp_path.rglob("*.npz"))) == 6
    assert not list(tmp_path.rglob(".tmp-*"))  # no partial files left behind
    ex = Counting(model)
    out = cached_attribute(ex, "m", images, targets, cache, batch_size=3)
    assert ex.calls == [3, 1]  # only the 4 images not stored
    ref = Counting(model).attribute(images, targets)
    np.testing.assert_array_equal(out.maps, ref.maps)


def test_lime_extras_round_trip(tmp_path, model, data) -> None:
    images, targets = data
    lime = Lime(model, n_samples=20, n_segments=8)
    cache = AttributionCache(tmp_path)
    mh = model_fingerprint(model)
    fresh = cached_attribute(lime, mh, images[:4], targets[:4], cache, batch_size=2)
    stored = cached_attribute(lime, mh, images[:4], targets[:4], cache)
    np.testing.assert_array_equal(fresh.maps, stored.maps)
    np.testing.assert_array_equal(fresh.extras["segments"], stored.extras["segments"])
    np.testing.assert_array_equal(fresh.extras["weights"], stored.extras["weights"])
    direct = lime.attribute(images[:4], targets[:4])
    assert fresh.extras["weights"].shape == direct.extras["weights"].shape


def test_fingerprint_tracks_weights(model) -> None:
    before = model_fingerprint(model)
    assert model_fingerprint(model) == before
    with torch.no_grad():
        next(model.parameters())[0, 0, 0, 0] += 1e-3
    assert model_fingerprint(model) != before


def test_stream_batches_and_cache(tmp_path, model, data) -> None:
    images, targets = data
    ex = Counting(model)
    cache = AttributionCache(tmp_path)
    items = list(zip(images, targets, strict=True))
    got = list(stream_attributions(ex, items, batch_size=4, cache=cache, progress=False))
    assert [list(i) for i, _ in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    np.testing.assert_array_equal(
        np.concatenate([a.maps for _, a in got]), ex.attribute(images, targets).maps
    )
    n = sum(ex.calls)
    list(stream_attributions(ex, iter(items), batch_size=4, cache=cache, progress=False))
    assert sum(ex.calls) == n  # all served from the cache
    assert peak_rss_mb() > 0


class _Doubler(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


class _Squarer(_Doubler):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((x * x).mean(dim=(2, 3)))


def test_fingerprint_covers_code_and_preprocessing(tmp_path) -> None:
    """Same weights, different forward code or channel order → different cache keys (issue 10.3)."""
    from leakaudit.models.load import Preprocessed, load_model

    torch.manual_seed(0)
    a, b = _Doubler(), _Squarer()
    b.load_state_dict(a.state_dict())
    for name, m in (("a", a), ("b", b)):
        torch.jit.script(m).save(str(tmp_path / f"{name}.pt"))
    sa, sb = (load_model(tmp_path / f"{n}.pt") for n in "ab")
    assert model_fingerprint(sa) != model_fingerprint(sb)
    assert model_fingerprint(sa) == model_fingerprint(load_model(tmp_path / "a.pt"))
    rgb = Preprocessed(a, (0.4, 0.5, 0.6), (0.2, 0.2, 0.2))
    bgr = Preprocessed(a, (0.4, 0.5, 0.6), (0.2, 0.2, 0.2), bgr=True)
    assert model_fingerprint(rgb) != model_fingerprint(bgr)
