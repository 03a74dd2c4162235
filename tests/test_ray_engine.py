"""The Ray engine (issue 17) gives the local engine's numbers: on a local cluster with two
workers, on a simulated two-node cluster, and when a worker dies mid-run (Ray retries its
batch; nothing is lost or counted twice). Skipped where the extra is not installed, except in
CI (CI installs ``leakaudit[ray]``)."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from leakaudit.auditing.audit_steps import AuditSteps
from leakaudit.auditing.model_audit import ModelAudit, audit_model
from leakaudit.auditing.verdict import Thresholds
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import PALETTE, TellSpec, poison
from leakaudit.engines import EngineOptions
from leakaudit.engines.ray_engine import import_ray, pool_size, probe
from leakaudit.errors import ConfigError, EngineError
from leakaudit.explain.cache import AttributionCache

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None and not os.environ.get("CI"),
    reason="the ray extra is not installed (pip install 'leakaudit[ray]')",
)
METHODS = {"saliency": {}, "smoothgrad": {"n_samples": 4},
           "lime": {"n_samples": 50, "n_segments": 20}}  # fmt: skip
RAY_INIT = {"object_store_memory": 200 * 2**20, "include_dashboard": False,
            "log_to_driver": False}  # fmt: skip
NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}  # a simulated node of the cluster


class CornerReader(nn.Module):
    """Predicts the class whose tell colour is in the top-left corner: a leak by design.

    The same model as ``model_fixtures.CornerReader``, defined here on purpose: Ray's workers
    unpickle the model, and they can import this test module's classes but not
    ``model_fixtures`` (imported from there, two tests failed with ModuleNotFoundError)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("palette", torch.tensor(PALETTE[:4], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, :, 2:8, 2:8].mean(dim=(2, 3))
        return -((patch[:, None, :] - self.palette[None]) ** 2).sum(-1) * 10


DATA = poison(make_shapes(24, seed=2, size=24), TellSpec(size=6), seed=0)


def run(
    engine: EngineOptions, cache: AttributionCache | None = None, model: nn.Module | None = None
) -> ModelAudit:
    """Small batches (4 images) so two workers share 18 batches of three methods."""
    return audit_model(
        model or CornerReader(), "m", DATA, METHODS, accuracy=1.0, thresholds=Thresholds(),
        gallery=[0, 5, 11], batch_size=4, progress=False, cache=cache, engine=engine,
        checks=AuditSteps(sanity=False, ablation=False),
    )  # fmt: skip


@pytest.fixture(scope="module")
def local() -> ModelAudit:
    return run(EngineOptions())


@pytest.fixture(scope="module")
def ray_local():
    ray = import_ray()
    ray.shutdown()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # CornerReader, by value
    ray.init(num_cpus=2, **RAY_INIT)
    yield ray
    ray.shutdown()


def assert_same(a: ModelAudit, b: ModelAudit) -> None:
    assert len(a.per_sample) == len(DATA) * len(METHODS)
    assert not b.per_sample.duplicated(["id", "method"]).any()
    pd.testing.assert_frame_equal(a.per_sample, b.per_sample, check_exact=False, atol=1e-6, rtol=0)
    assert a.verdict == b.verdict == "leak"
    assert a.behaviour == b.behaviour  # removal / swap predicted per sample on the workers
    assert b.behaviour["swap"]["follow_rate"] == 1.0  # the corner reader follows the tell
    for m in METHODS:
        np.testing.assert_allclose(a.compact_maps[m], b.compact_maps[m], atol=1e-3)  # float16
        np.testing.assert_allclose(a.gallery_maps[m], b.gallery_maps[m], atol=1e-6)
    assert [s.found.box for s in a.suspects] == [s.found.box for s in b.suspects]
    assert [c.value for c in a.conditions] == pytest.approx([c.value for c in b.conditions],
                                                            nan_ok=True)  # fmt: skip


@needs_ray
def test_two_workers_give_the_local_numbers_and_share_the_cache(local, ray_local, tmp_path):
    cache = AttributionCache(tmp_path / "shared")
    remote = run(EngineOptions("ray", workers=2), cache)
    assert_same(local, remote)
    assert (cache.hits, cache.misses) == (0, len(DATA) * len(METHODS))  # workers' counts
    again = AttributionCache(tmp_path / "shared")  # what the workers wrote serves this process
    assert_same(local, run(EngineOptions(), again))
    assert (again.hits, again.misses) == (len(DATA) * len(METHODS), 0)


@needs_ray
def test_a_worker_killed_mid_run_loses_and_repeats_nothing(local, ray_local, tmp_path):
    died = tmp_path / "died"
    remote = run(EngineOptions("ray", workers=2, fail_once=str(died)))
    assert died.exists()  # a worker really exited on its first batch
    assert_same(local, remote)


@needs_ray
def test_a_simulated_two_node_cluster_gives_the_local_numbers(local, ray_local):
    from ray.cluster_utils import Cluster

    ray_local.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=NODE)
    try:
        cluster.add_node(**NODE)
        ray_local.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray_local.nodes() if n["Alive"]]) == 2
        scripted = torch.jit.script(CornerReader())  # travels as a TorchScript archive
        assert_same(local, run(EngineOptions("ray", workers=2), model=scripted))
    finally:
        ray_local.shutdown()
        cluster.shutdown()


def test_missing_extra_is_one_line_naming_the_install(monkeypatch):
    """Through the public API, so the option reaches the engine (CLI: `--engine ray`, exit 2)."""
    import leakaudit

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(EngineError, match=r"pip install 'leakaudit\[ray\]'") as e:
        leakaudit.audit(CornerReader(), DATA, ["saliency"], engine="ray", sanity=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        leakaudit.audit(CornerReader(), DATA, ["saliency"], engine="spark")


@needs_ray
def test_cli_unreachable_cluster_exits_2_in_one_line(tmp_path, capsys, monkeypatch):
    from leakaudit.cli import run as cli_run
    from leakaudit.data.images import save_png

    for s in DATA.samples:
        save_png(s.image, tmp_path / "data" / DATA.class_names[s.label] / f"{s.id}.png")
    torch.jit.script(CornerReader()).save(str(tmp_path / "m.pt"))
    monkeypatch.setattr(sys, "argv", [
        "leakaudit", "audit", "--data", str(tmp_path / "data"), "--model", str(tmp_path / "m.pt"),
        "--methods", "saliency", "--quiet", "--out", str(tmp_path / "out"),
        "--classes", ",".join(DATA.class_names),
        "--engine", "ray", "--ray-address", "127.0.0.1:1",
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        cli_run()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "cannot reach a Ray cluster at 127.0.0.1:1" in err, err
    assert len(err.strip().splitlines()) == 1


def test_unreachable_cluster_is_an_error_at_once():
    with pytest.raises(EngineError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1:1"):
        probe("127.0.0.1:1", timeout_s=2)
    with pytest.raises(EngineError, match="expected HOST:PORT"):
        probe("head-node")


def test_pool_is_one_actor_per_gpu_else_per_cpu():
    class Cluster:  # what pool_size reads of a connected ray
        def __init__(self, resources: dict[str, float]) -> None:
            self.resources = resources

        def cluster_resources(self) -> dict[str, float]:
            return self.resources

    assert pool_size(Cluster({"CPU": 8.0}), None) == (8, 1.0, 0.0)
    assert pool_size(Cluster({"CPU": 8.0}), 3) == (3, 1.0, 0.0)
    assert pool_size(Cluster({"CPU": 8.0, "GPU": 2.0}), None) == (2, 1.0, 1.0)
    assert pool_size(Cluster({"CPU": 8.0, "GPU": 2.0}), 4) == (4, 1.0, 0.5)  # two share a GPU
