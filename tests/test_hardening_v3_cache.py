"""Hardening v3, cache: a cache you can trust, or that says it cannot be trusted.

1. the fingerprint covers what ``forward`` reads (TorchScript and eager attributes) and is the
   same for two loads of one file, also in another process;
2. entries are HMAC-authenticated under a private per-cache key: a forged entry is recomputed,
   and a key file others could read or plant makes the cache off;
3. links below the cache root are never read or written through;
4. an unusable cache is found before the work, a failing one mid-run is switched off, and the
   audit goes on; cached and uncached audits give the same numbers.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cache import Counting
from torch import nn

from leakaudit.explain import cache as cache_mod
from leakaudit.explain import make_explainer
from leakaudit.explain.cache import AttributionCache, cached_attribute, model_fingerprint
from leakaudit.models.load import Preprocessed, load_model, save_checkpoint
from leakaudit.models.zoo import SmallCNN


class Knobs(nn.Module):
    """Same weights and code for every setting; plain attributes pick what ``forward`` does."""

    def __init__(self, shift: int = 0, flip: bool = False, mode: str = "mean",
                 taps: list[int] | None = None) -> None:  # fmt: skip
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(3, 2)
        self.shift = shift
        self.flip = flip
        self.mode = mode
        self.taps = taps if taps is not None else [0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.mean(dim=(2, 3)) if self.mode == "mean" else x.amax(dim=(2, 3))
        if self.flip:
            v = v.flip(1)
        v = v * (self.shift + 1)
        for t in self.taps:
            v = v + x[:, :, t, t]
        return self.head(v)


VARIANTS = [{"shift": 2}, {"flip": True}, {"mode": "max"}, {"taps": [0, 3]}]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((6, 8, 8, 3), dtype=np.float32), rng.integers(0, 2, 6)


def _forge(cache: AttributionCache, method: str, key: str, arrays: dict, how: str) -> None:
    """What someone who can write the folder but does not hold the key can write: the map of
    their choice with the format-1 unkeyed SHA-256, that digest as a MAC, or an HMAC under a
    key of their own."""
    h = (
        hmac.new(b"guess", key.encode(), hashlib.sha256)
        if how == "hmac"
        else hashlib.sha256(key.encode())
    )
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    field = "__checksum__" if how == "checksum" else "__mac__"
    with open(cache.path(method, key), "wb") as f:
        np.savez(f, **{field: np.array(h.hexdigest())}, **arrays)


# 1 -- the fingerprint ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: next(iter(v)))
def test_torchscript_attribute_changes_the_fingerprint_and_the_maps(tmp_path, data, variant):
    images, targets = data
    torch.jit.script(Knobs()).save(str(tmp_path / "base.pt"))
    torch.jit.script(Knobs(**variant)).save(str(tmp_path / "other.pt"))
    base, other = load_model(tmp_path / "base.pt"), load_model(tmp_path / "other.pt")
    assert model_fingerprint(base) != model_fingerprint(other)
    cache = AttributionCache(tmp_path / "cache")
    cached_attribute(make_explainer("saliency", base), model_fingerprint(base), images, targets,
                     cache)  # fmt: skip
    ex = make_explainer("saliency", other)
    served = cached_attribute(ex, model_fingerprint(other), images, targets, cache)
    np.testing.assert_allclose(served.maps, ex.attribute(images, targets).maps)
    assert cache.hits == 0  # never the base model's maps


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: next(iter(v)))
def test_eager_attribute_changes_the_fingerprint(variant) -> None:
    assert model_fingerprint(Knobs()) != model_fingerprint(Knobs(**variant))
    assert model_fingerprint(Knobs(**variant)) == model_fingerprint(Knobs(**variant))


def test_wrapper_preprocessing_counts() -> None:
    inner = Knobs()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.5, 0.5)
    settings = [(mean, std, False), (mean, std, True), ((0.1, 0.2, 0.4), std, False),
                (mean, (0.5, 0.5, 0.6), False)]  # fmt: skip
    prints = {model_fingerprint(Preprocessed(inner, m, s, bgr=b)) for m, s, b in settings}
    assert len(prints) == 4


def test_eager_non_persistent_buffer_and_callable_attribute_count() -> None:
    a, b = Knobs(), Knobs()
    a.register_buffer("scale", torch.ones(1), persistent=False)
    b.register_buffer("scale", torch.full((1,), 2.0), persistent=False)
    assert model_fingerprint(a) != model_fingerprint(b)
    a.act, b.act = torch.relu, torch.tanh
    c = Knobs()
    c.register_buffer("scale", torch.ones(1), persistent=False)
    c.act = torch.relu
    assert model_fingerprint(a) == model_fingerprint(c)


_SUBPROCESS = """
import sys
from leakaudit.explain.cache import model_fingerprint
from leakaudit.models.load import Preprocessed, load_model
ts, ckpt = sys.argv[1:3]
print(model_fingerprint(load_model(ts)))
print(model_fingerprint(load_model(ckpt)))
print(model_fingerprint(Preprocessed(load_model(ckpt), (0.1, 0.2, 0.3), (0.5, 0.5, 0.5), True)))
"""


def test_same_file_loaded_twice_or_elsewhere_has_one_fingerprint(tmp_path) -> None:
    torch.jit.script(Knobs(shift=3, taps=[1, 2])).save(str(tmp_path / "m.pt"))
    torch.manual_seed(0)
    save_checkpoint(SmallCNN(2, width=4), "small_cnn", {"width": 4}, ["a", "b"],
                    {"input_size": 16}, {}, tmp_path / "ck.pt")  # fmt: skip
    ts = [model_fingerprint(load_model(tmp_path / "m.pt")) for _ in range(2)]
    ck = [model_fingerprint(load_model(tmp_path / "ck.pt")) for _ in range(2)]
    wrapped = model_fingerprint(
        Preprocessed(load_model(tmp_path / "ck.pt"), (0.1, 0.2, 0.3), (0.5, 0.5, 0.5), True)
    )
    assert ts[0] == ts[1] and ck[0] == ck[1]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # other set orders, other addresses
    out = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(tmp_path / "m.pt"),
                          str(tmp_path / "ck.pt")], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).parent.parent, check=True)  # fmt: skip
    assert out.stdout.split() == [ts[0], ck[0], wrapped]


# 2 -- authenticated entries, a private key --------------------------------------------------


@pytest.mark.parametrize("how", ["checksum", "sha256", "hmac"])
def test_forged_entry_fails_and_is_recomputed(tmp_path, data, how) -> None:
    images, targets = data
    ex = Counting(SmallCNN(2, width=4))
    cache = AttributionCache(tmp_path)
    good = cached_attribute(ex, "m", images, targets, cache)
    key = cache.key("m", images[2], targets[2], ex.describe())
    _forge(cache, ex.name, key, {"map": np.zeros_like(good.maps[2])}, how)  # "nothing to see here"
    again = AttributionCache(tmp_path)
    out = cached_attribute(ex, "m", images, targets, again)
    np.testing.assert_array_equal(out.maps, good.maps)
    assert again.corrupt == 1 and ex.calls[-1] == 1


def test_key_file_is_private_and_entries_do_not_move_between_caches(tmp_path, data) -> None:
    images, targets = data
    ex = Counting(SmallCNN(2, width=4))
    a, b = AttributionCache(tmp_path / "a"), AttributionCache(tmp_path / "b")
    cached_attribute(ex, "m", images[:1], targets[:1], a)
    key_file = tmp_path / "a" / cache_mod.KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    k = a.key("m", images[0], targets[0], ex.describe())
    b.path(ex.name, k).parent.mkdir(parents=True)
    b._key()
    shutil.copy(a.path(ex.name, k), b.path(ex.name, k))  # valid there, foreign here
    assert b.load(ex.name, k) is None and b.corrupt == 1


def _untrusted(tmp_path: Path, how: str, monkeypatch) -> Path:
    root = tmp_path / "c"
    AttributionCache(root, probe=True)
    key_file = root / cache_mod.KEY_FILE
    if how == "group-readable":
        key_file.chmod(0o640)
    elif how == "link":
        real = tmp_path / "elsewhere.key"
        key_file.rename(real)
        key_file.symlink_to(real)
    else:  # someone else's
        monkeypatch.setattr(cache_mod, "_euid", lambda: os.geteuid() + 1)
    return root


UNTRUSTED = [("group-readable", "chmod 600"), ("link", "symbolic link"), ("foreign", "not by you")]


@pytest.mark.parametrize(("how", "says"), UNTRUSTED)
def test_untrusted_key_turns_the_cache_off_with_one_warning(tmp_path, data, monkeypatch, capsys,
                                                             how, says) -> None:  # fmt: skip
    images, targets = data
    root = _untrusted(tmp_path, how, monkeypatch)
    capsys.readouterr()
    cache = AttributionCache(root, probe=True)
    ex = Counting(SmallCNN(2, width=4))
    cached_attribute(ex, "m", images, targets, cache)
    err = capsys.readouterr().err
    assert not cache.enabled and says in cache.reason and err.count("Warning:") == 1, err
    assert sum(ex.calls) == len(images) and not list(root.rglob("*.npz"))
    assert cache_mod.cache_off_reason(root) == cache.reason


# 3 -- no links below the root ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["shard", "method", "entry"])
def test_links_inside_the_cache_are_not_followed(tmp_path, data, capsys, where) -> None:
    images, targets = data
    root, outside = tmp_path / "cache", tmp_path / "outside"
    ex = Counting(SmallCNN(2, width=4))
    good = cached_attribute(ex, "m", images, targets, AttributionCache(root))
    cache = AttributionCache(root)
    entry = cache.path(ex.name, cache.key("m", images[0], targets[0], ex.describe()))
    victim = {"shard": entry.parent, "method": entry.parent.parent, "entry": entry}[where]
    victim.rename(outside)
    victim.symlink_to(outside)
    before = sorted((p.name, p.read_bytes()) for p in _files(outside))
    out = cached_attribute(ex, "m", images, targets, cache)
    np.testing.assert_array_equal(out.maps, good.maps)
    assert cache.corrupt >= 1 and ex.calls[-1] >= 1  # read as damaged, not through the link
    assert sorted((p.name, p.read_bytes()) for p in _files(outside)) == before  # nothing written
    if where == "entry":  # the link itself was replaced by a real entry
        assert not entry.is_symlink() and cache.enabled
    else:  # a folder link is refused on write: the cache is off, with one warning
        assert not cache.enabled and "link" in cache.reason
        assert capsys.readouterr().err.count("Warning:") == 1


def _files(p: Path) -> list[Path]:
    return [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]


def test_cache_root_may_be_a_link_the_user_chose(tmp_path, data) -> None:
    images, targets = data
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    ex = Counting(SmallCNN(2, width=4))
    cached_attribute(ex, "m", images, targets, AttributionCache(tmp_path / "link", probe=True))
    again = AttributionCache(tmp_path / "link", probe=True)
    cached_attribute(ex, "m", images, targets, again)
    assert again.hits == len(images) and sum(ex.calls) == len(images)


# 4 -- unusable or failing caches --------------------------------------------------------------


def test_probe_finds_an_unusable_folder_before_the_work(tmp_path, data, capsys) -> None:
    images, targets = data
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = AttributionCache(blocker / "cache", probe=True)
    assert not cache.enabled and str(blocker) in cache.reason
    err = capsys.readouterr().err
    assert err.count("Warning:") == 1 and "Not a directory" in err, err
    ex = Counting(SmallCNN(2, width=4))
    cached_attribute(ex, "m", images, targets, cache)
    assert sum(ex.calls) == len(images)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_probe_finds_a_read_only_folder(tmp_path, capsys) -> None:
    (tmp_path / "ro").mkdir(mode=0o500)
    cache = AttributionCache(tmp_path / "ro", probe=True)
    assert not cache.enabled and "Permission denied" in cache.reason


def test_disk_full_mid_run_turns_the_cache_off_not_the_audit(tmp_path, data, capsys,
                                                             monkeypatch) -> None:  # fmt: skip
    images, targets = data
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    cache = AttributionCache(tmp_path, probe=True)  # the probe writes while there is room
    calls.clear()
    monkeypatch.setattr(cache_mod.os, "fsync", fsync)
    ex = Counting(SmallCNN(2, width=4))
    out = cached_attribute(ex, "m", images, targets, cache, batch_size=2)
    np.testing.assert_array_equal(out.maps, Counting(ex.model).attribute(images, targets).maps)
    err = capsys.readouterr().err
    assert not cache.enabled and "No space left" in cache.reason
    assert err.count("Warning:") == 1, err
    assert len(list(tmp_path.rglob("*.npz"))) == 3 and not list(tmp_path.rglob(".tmp-*"))


# the audit end to end: an unusable cache, and cached numbers == uncached numbers -------------

SIZE, CLASSES = 24, "disc,square,triangle,cross"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    from leakaudit.data.images import save_png
    from leakaudit.data.synthetic import make_shapes

    root = tmp_path_factory.mktemp("v3cache")
    data = make_shapes(12, seed=2, size=SIZE)
    for s in data:
        name = data.class_names[s.label]
        save_png(s.image, root / "data" / name / f"{s.id}.png")
        save_png(np.repeat(s.region[..., None], 3, -1).astype(np.float32),
                 root / "masks" / name / f"{s.id}.png")  # fmt: skip
    torch.manual_seed(0)
    torch.jit.script(SmallCNN(4, width=4).eval()).save(str(root / "m.pt"))
    return root


def _audit(ws: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    from leakaudit.cli import run

    args = ["audit", "--data", str(ws / "data"), "--masks", str(ws / "masks"), "--model",
            str(ws / "m.pt"), "--classes", CLASSES, "--methods", "saliency,lime",
            "--lime-samples", "16", "--quiet", "--out", str(out), *extra]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        run(args)
    return exc.value.code, capsys.readouterr().err


def test_unusable_cache_dir_is_reported_and_the_audit_runs(ws, tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _audit(ws, tmp_path / "o", capsys, "--cache-dir", str(blocker))
    assert code in (0, 1, 3), err
    assert (tmp_path / "o" / "summary.json").exists()
    assert "cache:   off (" in err and str(blocker) in err and err.count("Warning: attr") == 1


def _numbers(summary: Path) -> dict:
    """summary.json less the two settings that differ on purpose (--out, --no-cache); it has
    no timings (those go to run_info.json) and no cache counters."""
    s = json.loads(summary.read_text())
    del s["config"]["out"], s["config"]["cache"]
    return s


def test_cached_and_uncached_audits_report_the_same_numbers(ws, tmp_path, capsys,
                                                            monkeypatch) -> None:  # fmt: skip
    made: list[AttributionCache] = []

    class Recording(AttributionCache):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr("leakaudit.auditing.pipeline.AttributionCache", Recording)
    runs = {}
    for name, extra in (("first", []), ("hits", []), ("fresh", ["--no-cache"])):
        cache_flag = ["--cache-dir", str(tmp_path / "cache")]
        code, err = _audit(ws, tmp_path / name, capsys, *cache_flag, *extra)
        assert code in (0, 1, 3), err
        runs[name] = _numbers(tmp_path / name / "summary.json")
    first, hits = made[0], made[1]
    assert first.misses > 0 and first.hits == 0
    assert hits.hits == first.misses and hits.misses == 0 and hits.corrupt == 0  # all hits
    assert runs["first"] == runs["hits"] == runs["fresh"]
