"""Samples whose arrays wait on disk (data/spill.py): the same numbers, flat memory.

Known answers: a spilled array reads back bit for bit; a dataset read with spilling forced gives
the same samples and the same audit scores as one held in memory; reading 120 crops at 224 px
with spilling keeps the traced peak near one source image, not 120 decoded crops (which would
be 72 MB).
"""

from __future__ import annotations

import io
import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from leakaudit.data.formats import read_dataset
from leakaudit.data.spill import SpilledStack, SpillStore, spill_limit_bytes
from leakaudit.data.synthetic import make_shapes
from leakaudit.errors import ConfigError

BCCD = Path(__file__).resolve().parents[1] / "examples" / "data" / "bccd"


def test_store_round_trip_is_exact_and_gives_fresh_copies():
    rng = np.random.default_rng(0)
    store = SpillStore()
    arrays = [rng.random((7, 5, 3), dtype=np.float32), rng.random((9, 4)) > 0.5,
              np.arange(12, dtype=np.int64).reshape(3, 4)]  # fmt: skip
    handles = [store.put(a) for a in arrays]
    for a, h in zip(arrays, handles, strict=True):
        back = h.load()
        assert back.dtype == a.dtype and back.shape == a.shape
        assert np.array_equal(back, a)
        back[...] = 0  # a fresh writable copy: the stored value does not change
        assert np.array_equal(h.load(), a)
    assert store.nbytes == sum(a.nbytes for a in arrays)


def test_spilled_sample_keeps_its_values_and_moves_only_what_changes():
    ds = make_shapes(6, seed=3, size=32)
    spilled = ds.spill()
    for a, b in zip(ds, spilled, strict=True):
        assert b.spilled and not a.spilled
        assert np.array_equal(a.image, b.image) and np.array_equal(a.region, b.region)
        assert a.label == b.label and a.id == b.id
    s = spilled[0]
    mask = np.zeros(s.image.shape[:2], bool)
    mask[:4, :4] = True
    t = s.with_(tell=mask, tell_box=(0, 0, 4, 4))
    assert t.spilled  # the image stays on disk; only the new mask is in memory
    assert np.array_equal(t.tell, mask) and np.array_equal(t.image, s.image)
    with pytest.raises(AttributeError, match="immutable"):
        s.label = 2


def test_pickled_sample_carries_its_arrays():
    """Workers of another process (the Ray engine) cannot read this process's spill file."""
    s = make_shapes(2, seed=1, size=24).spill()[1]
    back = pickle.loads(pickle.dumps(s))
    assert not back.spilled
    assert np.array_equal(back.image, s.image) and np.array_equal(back.region, s.region)
    assert back.id == s.id and back.label == s.label and back.tell is None


def test_spill_limit_from_environment(monkeypatch):
    monkeypatch.setenv("LEAKAUDIT_SPILL_MB", "1.5")
    assert spill_limit_bytes() == 1.5 * 2**20
    monkeypatch.setenv("LEAKAUDIT_SPILL_MB", "lots")
    with pytest.raises(ConfigError, match="LEAKAUDIT_SPILL_MB"):
        spill_limit_bytes()


def _crops(size: int, n: int):
    return read_dataset(BCCD, "voc", mode="crop", window=192, size=size, max_per_class=n,
                        classes=["RBC", "WBC", "Platelets"], skip_unknown=True, seed=0)  # fmt: skip


def test_reading_spills_a_big_set_with_identical_values(monkeypatch):
    held = _crops(40, 8)
    monkeypatch.setenv("LEAKAUDIT_SPILL_MB", "0")
    spilled = _crops(40, 8)
    assert not any(s.spilled for s in held) and all(s.spilled for s in spilled)
    assert [s.id for s in held] == [s.id for s in spilled]
    for a, b in zip(held, spilled, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.region, b.region)


def test_reading_224px_crops_keeps_memory_near_one_image(monkeypatch):
    monkeypatch.setenv("LEAKAUDIT_SPILL_MB", "0")
    tracemalloc.start()
    try:
        ds = _crops(224, 40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = sum(s.image.nbytes for s in ds)
    assert len(ds) >= 100 and held > 60e6  # what the samples would hold decoded
    # one 640×480 source decoded as float64 is 7.4 MB; its crop and masks a few more
    assert peak < 25e6, f"traced peak {peak / 1e6:.0f} MB for {held / 1e6:.0f} MB of crops"


def test_audit_is_the_same_spilled_or_held():
    import leakaudit
    from leakaudit.models.train import train_classifier
    from leakaudit.models.zoo import build
    from leakaudit.report.bundle import load_bundle, save_bundle
    from leakaudit.report.collect import collect
    from leakaudit.report.summary import summary_text, to_summary

    ds = make_shapes(48, seed=2, size=32, n_classes=3)
    model = train_classifier(build("small_cnn", 3, seed=0), ds.images(), ds.labels(), seed=0,
                             epochs=1, batch_size=16, progress=False).model.eval()  # fmt: skip

    def run(data):
        r = leakaudit.audit(model, data, ["saliency", "gradcam"], sanity=False, seed=0)
        return r, summary_text(to_summary(r))

    (a, text_a), (b, text_b) = run(ds), run(ds.spill())
    pa, pb = a.models["model"].per_sample, b.models["model"].per_sample
    assert len(pa) == 2 * len(ds) and pa.equals(pb)
    assert text_a == text_b
    # the spilled audit's compact maps wait in a spill file too, and read back the same
    for method in ("saliency", "gradcam"):
        held, spilled = (
            a.models["model"].compact_maps[method],
            b.models["model"].compact_maps[method],
        )
        assert isinstance(held, np.ndarray) and isinstance(spilled, SpilledStack)
        assert np.array_equal(held, np.asarray(spilled), equal_nan=True)
    # ... and the report's data and saved bundle (written from the file a chunk at a time) agree
    bundles = []
    for r in (a, b):
        data = collect(r, to_summary(r), None)
        buf = io.BytesIO()
        save_bundle(data, buf)
        buf.seek(0)
        bundles.append((data, load_bundle(buf)))
    (data_a, saved_a), (data_b, saved_b) = bundles
    assert data_a.meta["galleries"] == data_b.meta["galleries"]
    for method in ("saliency", "gradcam"):
        for x, y in [(saved_a.maps, saved_b.maps), (data_a.panel_maps, data_b.panel_maps)]:
            assert np.array_equal(x["model"][method], y["model"][method], equal_nan=True)


def test_spilled_stack_reads_and_writes_like_an_array():
    rng = np.random.default_rng(3)
    held = np.full((2500, 4, 3), np.nan, np.float16)  # more rows than one fill chunk
    stack = SpilledStack(held.shape, np.float16)
    assert np.array_equal(np.asarray(stack), held, equal_nan=True)
    idx = rng.permutation(len(held))[:700]
    values = rng.random((700, 4, 3)).astype(np.float16)
    held[idx], stack[idx] = values, values
    keys = [5, -1, slice(3, 900), slice(None, None, 7), idx, np.array([], np.int64),
            held[:, 0, 0] > 0.5, (slice(10, 20), 1), (7, 2)]  # fmt: skip
    for key in keys:
        assert np.array_equal(stack[key], held[key], equal_nan=True), key
    assert np.array_equal(np.concatenate(list(stack.chunks(1000))), held, equal_nan=True)
    assert np.array_equal(pickle.loads(pickle.dumps(stack)), held, equal_nan=True)
    with pytest.raises(IndexError):
        stack[np.array([len(held)])]


def test_training_reads_batches_and_gives_the_same_weights_spilled_or_held():
    """``fit`` stacks one batch at a time (never the whole set), so a spilled set trains too."""
    import torch

    from leakaudit.models.fit import fit

    ds = make_shapes(120, seed=4, size=32, n_classes=3)
    a, rep_a = fit(ds, "small_cnn", seed=1, epochs=2, progress=False)
    b, rep_b = fit(ds.spill(), "small_cnn", seed=1, epochs=2, progress=False)
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), k
    assert rep_a["history"] == rep_b["history"]


@pytest.mark.skipif(
    not Path("/proc/self/statm").exists() or os.environ.get("LEAKAUDIT_NO_MALLOPT") == "1",
    reason="needs Linux /proc and the mallopt settings",
)
def test_release_freed_memory_returns_stranded_heap_pages():
    """Big freed buffers pinned under small live ones (the Grad-CAM growth at 224 px) stay
    resident under the mallopt settings until ``release_freed_memory`` trims them."""
    from leakaudit.runtime import configure, release_freed_memory, rss_bytes

    configure()
    release_freed_memory(slack=0)
    big, small = [], []
    for _ in range(64):
        big.append(np.ones(1 << 19))  # 4 MB each, from the heap (no mmap after configure)
        small.append(np.ones(64))  # lives on, above the big one
    before = rss_bytes()
    del big
    assert rss_bytes() > before - 64 * 2**20  # freed, yet still resident
    assert not release_freed_memory(slack=2**40)  # not grown enough: no trim
    assert release_freed_memory(slack=0)
    assert rss_bytes() < before - 128 * 2**20
    assert len(small) == 64
