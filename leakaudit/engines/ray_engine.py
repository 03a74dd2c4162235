"""The Ray engine: the audit's batches as a Ray Dataset, explained by a pool of actors.

Each row of the dataset is one batch (its task, its samples); ``map_batches`` hands rows to
actors that each load the model once (on a GPU when Ray gave them one) and run
``work.explain_batch`` — the local engine's code — so the numbers are the local engine's.
Only the per-sample rows, compact maps, gallery maps and (for discovery) the discovery
method's maps come back. Ray retries the batches of a worker that dies (actors restart); the
driver checks that every batch came back exactly once. Ray is imported only here, lazily.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import pickle
import socket
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leakaudit.engines.work import (
    BEHAVIOUR,
    BatchResult,
    EngineOptions,
    Job,
    Task,
    explain_batch,
    plan_tasks,
)
from leakaudit.errors import EngineError
from leakaudit.explain.base import Explainer
from leakaudit.explain.cache import AttributionCache

INSTALL_HINT = "pip install 'leakaudit[ray]'"


def import_ray() -> Any:
    """``ray`` with Ray Data, or an EngineError that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise EngineError(f"--engine ray needs Ray ({e.name} is missing): {INSTALL_HINT}") from e
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at ``address`` (or start a local one); reuse a running connection."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if address and address != "auto":
        probe(address)
    try:
        with _quiet_stderr():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=True)  # fmt: skip
    except Exception as e:  # ConnectionError, RuntimeError, ValueError … as one line
        where = f"at {address}" if address else "(a local one)"
        raise EngineError(f"cannot reach a Ray cluster {where}: {_first_line(e)}") from e
    return ray


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Nothing on stderr while Ray connects: its C++ core writes each retry ("Failed to connect
    to GCS …", ~20 lines for one unreachable head) straight to file descriptor 2, past Python's
    logging, and the one-line EngineError says all of it. Python warnings are muted too."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def probe(address: str, timeout_s: float = 5.0) -> None:
    """EngineError unless something listens at HOST:PORT: Ray itself retries an unreachable
    head node for minutes before giving up."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise EngineError(f"cannot reach a Ray cluster at {address}: {e}") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def model_bytes(model: nn.Module) -> bytes:
    """The model as bytes an actor can load: pickled (cloudpickle) with every TorchScript part
    stored as a TorchScript archive (they cannot be pickled); weights moved to the CPU first so a
    worker without the driver's GPU can load them."""
    from ray import cloudpickle

    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).cpu()

    class _Pickler(cloudpickle.CloudPickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, torch.jit.ScriptModule):
                from leakaudit.models.load import quiet_jit

                buf = io.BytesIO()
                with quiet_jit():
                    torch.jit.save(obj, buf)
                return ("torchscript", buf.getvalue())
            return None

    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(model)
    return buf.getvalue()


def load_model_bytes(data: bytes, device: torch.device) -> nn.Module:
    """Inverse of ``model_bytes``, on ``device``, in eval mode."""

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            kind, payload = pid
            if kind != "torchscript":
                raise pickle.UnpicklingError(f"unknown model part {kind!r}")
            from leakaudit.models.load import quiet_jit

            with quiet_jit():
                return torch.jit.load(io.BytesIO(payload), map_location="cpu")

    return _Unpickler(io.BytesIO(data)).load().to(device).eval()


class Worker:
    """One actor of the pool: loads the model once, then explains the batches it is given."""

    def __init__(
        self,
        model_ref: list[Any],
        methods: dict[str, dict[str, Any]],
        job: Job,
        cache_root: str | None,
        cache_enabled: bool,
        fail_once: str | None,
    ) -> None:
        import ray

        from leakaudit.runtime import configure

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        os.environ["LEAKAUDIT_THREADS"] = str(max(1, int(cpus)))  # not one per core of the node
        configure()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model_bytes(ray.get(model_ref[0]), device)
        self.methods = methods
        self.job = job
        # probed here too: a worker's node may see the folder differently from the driver
        self.cache = AttributionCache(cache_root, cache_enabled, probe=True) if cache_root else None
        self.fail_once = fail_once
        self.explainers: dict[str, Explainer] = {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from leakaudit.explain import make_explainer

        out = []
        for blob in batch["blob"]:
            task, samples = pickle.loads(blob)
            if self.fail_once and not Path(self.fail_once).exists():
                Path(self.fail_once).touch()
                os._exit(1)  # the test hook: this worker dies mid-run, once
            if task.method not in self.explainers and task.method != BEHAVIOUR:
                kwargs = self.methods[task.method]
                self.explainers[task.method] = make_explainer(task.method, self.model, **kwargs)
            ex = self.explainers.get(task.method)
            res = explain_batch(task, samples, ex, self.job, self.cache, self.model)
            out.append(pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL))
        return {"task": np.asarray(batch["task"]), "result": np.array(out, dtype=object)}


def task_blocks(ray: Any, tasks: Sequence[Task], samples: Sequence[Any]) -> list[Any]:
    """One object-store block per task (its samples pickled with their pixels), put one at a
    time: the driver holds one task's pixels at once, not the dataset's (spilled samples stay
    on disk until their task is put; Ray's store spills to its own disk when full)."""
    import pyarrow as pa

    refs = []
    for t in tasks:
        blob = pickle.dumps((t, [samples[i] for i in t.idx]), protocol=pickle.HIGHEST_PROTOCOL)
        refs.append(ray.put(pa.table({"task": [t.number], "blob": pa.array([blob], pa.binary())})))
    return refs


def pool_size(ray: Any, workers: int | None) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor): one actor per GPU when the cluster has GPUs
    (more actors than GPUs share them), else one per CPU; ``workers`` overrides the count."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
    if gpus:
        n = workers or gpus
        return n, 1.0, min(1.0, gpus / n)
    return workers or cpus, 1.0, 0.0


def run(
    job: Job,
    model: nn.Module,
    methods: dict[str, dict[str, Any]],
    explainers: dict[str, Explainer],
    orders: dict[str, np.ndarray],
    samples: Sequence[Any],
    cache: AttributionCache | None,
    options: EngineOptions,
) -> Iterator[BatchResult]:
    """The batches of every method on the actor pool, handed on as they complete."""
    ray = connect(options.address)
    tasks = plan_tasks(orders, job.batch_size)
    if not tasks:
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours is the driver's bar below
    ctx.execution_options.preserve_order = True
    n_actors, cpus, gpus = pool_size(ray, options.workers)
    use_cache = cache is not None and cache.enabled
    done = ray.data.from_arrow_refs(task_blocks(ray, tasks, samples)).map_batches(
        Worker, batch_size=1, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        fn_constructor_kwargs={
            "model_ref": [ray.put(model_bytes(model))], "methods": methods, "job": job,
            "cache_root": str(cache.root) if use_cache else None, "cache_enabled": use_cache,
            "fail_once": options.fail_once,
        },
        num_cpus=cpus, num_gpus=gpus,  # Ray Data's actors restart and retry their tasks
    )  # fmt: skip
    bar = tqdm(total=sum(len(t.idx) for t in tasks), unit="img", disable=not job.progress,
               desc=f"{job.name}: {'+'.join(orders)} on Ray ({n_actors} workers)")  # fmt: skip
    for row in done.iter_rows():
        res: BatchResult = pickle.loads(row["result"])
        if use_cache:  # the workers' hits and misses, as if counted here
            cache.hits += res.cache_counts[0]  # type: ignore[union-attr]
            cache.misses += res.cache_counts[1]  # type: ignore[union-attr]
            cache.corrupt += res.cache_counts[2]  # type: ignore[union-attr]
        bar.update(len(res.idx))
        yield res  # assembled as it arrives (engines.work.assemble)
    bar.close()
