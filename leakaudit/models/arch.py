"""Architecture names → functions that build an ``nn.Module``.

Accepted names: a bundled one (``leakaudit.models.zoo.ARCHITECTURES``), ``"module:Name"``,
``"path/to/file.py:Name"`` and ``"timm:model_name"``. ``Name`` may be an ``nn.Module`` subclass
or a factory function that returns one (``torchvision.models:resnet18``). Anything but a bundled
name imports and runs code, so only the user may name it (``--arch``); ``leakaudit.models.load``
never passes a name it read from a checkpoint here unless it is bundled.

Relative names resolve from the current directory, like ``python -m``: ``mynet:TinyNet`` finds
``./mynet.py`` without the user editing ``PYTHONPATH``. torchvision and timm are optional and
never a dependency; their factories are always called without pretrained weights (no downloads:
the checkpoint supplies the weights).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from leakaudit.errors import ModelLoadError
from leakaudit.models.zoo import ARCHITECTURES

Factory = Callable[..., nn.Module]

# kwargs that would make torchvision/timm download weights; the checkpoint holds the weights.
_DOWNLOAD_KWARGS = ("pretrained", "weights", "pretrained_cfg", "pretrained_cfg_overlay")
_OPTIONAL_PACKAGES = ("torchvision", "timm")

MAX_PARAMS = 2_000_000_000
"""Most parameters (weights + buffers) a model may have before any real memory is allocated.

The largest image classifiers have ~2e9 parameters (8 GB as float32); more than that from an
``arch_kwargs`` is a typo or hostile metadata (``width = 1e9`` asked small_cnn for 108 GB).
Override with the environment variable ``LEAKAUDIT_MAX_PARAMS``."""
MAX_PARAMS_ENV = "LEAKAUDIT_MAX_PARAMS"


def is_bundled(arch: object) -> bool:
    """True for names of architectures shipped with leakaudit: the only ones safe to take from
    a checkpoint's own metadata, because resolving them imports nothing."""
    return isinstance(arch, str) and arch in ARCHITECTURES


@contextmanager
def _first_on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for one import only; the path is restored afterwards."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _import_file(file: Path) -> ModuleType:
    # A stable module name (not hash(), which changes per process): the class's __module__ is
    # part of the attribution cache's model fingerprint, so it must survive re-runs.
    digest = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:16]
    mod_name = f"_leakaudit_arch_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import architecture file {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        with _first_on_path(file.resolve().parent):  # so the file can import its neighbours
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def _installed(package: str) -> bool:
    if package in sys.modules:
        return sys.modules[package] is not None
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _import_module(where: str, arch: str) -> ModuleType:
    top = where.split(".")[0]
    try:
        with _first_on_path(Path.cwd()):
            return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if top in _OPTIONAL_PACKAGES and not _installed(top):
            raise ModelLoadError(
                f"architecture {arch!r} needs {top}, which is not installed; install the "
                f"optional extra: pip install {top}"
            ) from e
        if e.name == top:
            raise ModelLoadError(
                f"cannot import {where!r} for architecture {arch!r}: no module named {top!r} "
                f"in the current directory ({Path.cwd()}) or on the Python path"
            ) from e
        raise


def _timm_factory(name: str, arch: str) -> Factory:
    timm = _import_module("timm", arch)

    def create(num_classes: int | None = None, **kwargs: Any) -> nn.Module:
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        return timm.create_model(name, pretrained=False, **kwargs)

    create.__name__ = f"timm.create_model({name!r})"
    create.__qualname__ = create.__name__
    return create


def resolve_arch(arch: str) -> Factory:
    """A bundled name, ``"package.module:Name"``, ``"path/to/file.py:Name"`` or
    ``"timm:model_name"`` → a callable that builds the model (a class or a factory function).

    Imports (and so runs) the named code: call it only with a name the user gave.
    """
    if not isinstance(arch, str):
        raise ModelLoadError(f"architecture must be a string, got {type(arch).__name__}")
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if ":" not in arch:
        raise ModelLoadError(
            f"unknown architecture {arch!r}: use one of {sorted(ARCHITECTURES)}, "
            "'module:Name', 'file.py:Name' or 'timm:model_name'"
        )
    where, _, name = arch.rpartition(":")
    if not where or not name:
        raise ModelLoadError(f"architecture {arch!r} must look like 'module:Name'")
    try:
        if where == "timm":
            return _timm_factory(name, arch)
        if where.endswith(".py") or "/" in where or "\\" in where:
            file = Path(where)
            if not file.is_file():
                raise ModelLoadError(f"architecture file not found: {file}")
            module = _import_file(file)
        else:
            module = _import_module(where, arch)
    except ModelLoadError:
        raise
    except Exception as e:  # an import error in user code: report it in one line, don't crash
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot import {where!r} for architecture {arch!r}: {first}") from e
    target = getattr(module, name, None)
    if isinstance(target, type) and issubclass(target, nn.Module):
        return target
    if callable(target) and not isinstance(target, type):
        return target  # a factory function; its result is checked in construct()
    raise ModelLoadError(
        f"{arch!r}: {name!r} in {where} is not an nn.Module class or a function returning one"
    )


def _from_optional_package(factory: Factory) -> bool:
    module = getattr(factory, "__module__", None) or ""
    name = getattr(factory, "__name__", "")
    return module.split(".")[0] in _OPTIONAL_PACKAGES or name.startswith("timm.")


def construct(
    factory: Factory,
    kwargs: dict[str, Any],
    n_classes: int | None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Call ``factory(**kwargs)`` on ``device``, adding the class count under the name the
    factory takes (``n_classes`` or ``num_classes``); the result must be an ``nn.Module``.

    ``device="meta"`` builds shapes without memory: the loader compares them with the
    checkpoint before allocating anything a hostile ``arch_kwargs`` could make huge.
    """
    kwargs = dict(kwargs)
    label = getattr(factory, "__qualname__", None) or repr(factory)
    optional = _from_optional_package(factory)
    if optional:
        bad = [k for k in _DOWNLOAD_KWARGS if kwargs.get(k) not in (None, False)]
        if bad:
            raise ModelLoadError(
                f"{label}: {bad[0]}={kwargs[bad[0]]!r} would download weights; leakaudit never "
                "downloads: the checkpoint supplies the weights"
            )
    if n_classes is not None and "n_classes" not in kwargs and "num_classes" not in kwargs:
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        if "n_classes" in params:
            kwargs["n_classes"] = n_classes
        elif "num_classes" in params or optional:  # torchvision takes it through **kwargs
            kwargs["num_classes"] = n_classes
    where = torch.device(device)
    try:
        with where if where.type != "cpu" else nullcontext():
            model = factory(**kwargs)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot build {label}(**{kwargs}): {first}") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{label}(**{kwargs}) returned a {type(model).__name__}, not a model")
    return model


def max_params() -> int:
    """``MAX_PARAMS``, or the whole number in ``$LEAKAUDIT_MAX_PARAMS``."""
    raw = os.environ.get(MAX_PARAMS_ENV, "").strip()
    if not raw:
        return MAX_PARAMS
    try:
        cap = int(raw)
    except ValueError:
        cap = 0
    if cap < 1:
        raise ModelLoadError(f"{MAX_PARAMS_ENV} must be a whole number ≥ 1, got {raw!r}")
    return cap


def _int_parameters(factory: Factory) -> set[str]:
    """Constructor arguments that take a whole number: annotated ``int`` or defaulting to one."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set()
    return {
        name for name, p in params.items() if p.annotation in (int, "int") or type(p.default) is int
    }


def check_int_kwargs(factory: Factory, kwargs: dict[str, Any]) -> None:
    """A width of ``True``, ``1e9`` or ``-4`` is refused by name before anything is built:
    torch takes ``True`` as 1 and fails on floats only deep inside a layer."""
    label = getattr(factory, "__qualname__", None) or repr(factory)
    for name in sorted(_int_parameters(factory) & set(kwargs)):
        v = kwargs[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            shown = repr(v) if isinstance(v, float) else f"{type(v).__name__} {v!r}"
            raise ModelLoadError(
                f"arch_kwargs.{name}: {label} takes a whole number ≥ 0, got {shown[:60]}"
            )


def meta_build(factory: Factory, kwargs: dict[str, Any], n_classes: int | None) -> nn.Module | None:
    """The model built on torch's meta device (shapes, no memory), refused with a one-line
    ``ModelLoadError`` naming arch_kwargs when it is over ``max_params()``; None when a user's
    factory cannot build on the meta device (then only the real build can tell).

    Why first: a hostile ``arch_kwargs`` must fail here, not after the real build has tried to
    allocate it. A bundled architecture always builds on the meta device, so its failure is final;
    so is a size overflow, whatever the factory."""
    check_int_kwargs(factory, kwargs)
    label = getattr(factory, "__qualname__", None) or repr(factory)
    cap = max_params()
    try:
        shell = construct(factory, kwargs, n_classes, device="meta")
    except ModelLoadError as e:
        if "overflow" in str(e).lower():
            raise ModelLoadError(
                f"arch_kwargs {kwargs}: {label} would be too large to build (over the cap of "
                f"{cap:,} parameters, {MAX_PARAMS_ENV})"
            ) from e
        if factory in ARCHITECTURES.values():
            raise
        return None
    n = sum(t.numel() for t in itertools.chain(shell.parameters(), shell.buffers()))
    if n > cap:
        raise ModelLoadError(
            f"arch_kwargs {kwargs}: {label} would have {n:,} parameters, over the cap of "
            f"{cap:,} (set {MAX_PARAMS_ENV} to allow more)"
        )
    return shell
