"""Helpers the insight views share: input shape, layer lookup, hooks, blur, display scaling."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from leakaudit.errors import ConfigError

InputShape = tuple[int, int, int]  # channels, height, width of what the model takes ([0, 1])


def first_weight_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The first Conv2d or Linear in registration order (the forward order of Sequential nets)."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return name, m
    raise ConfigError("the model has no Conv2d or Linear layer to show")


def input_shape(model: nn.Module, size: int | None = None) -> InputShape:
    """(channels, height, width) the model eats, read from its first Conv2d/Linear layer.

    A conv net takes ``size`` (default 64) square images with the conv's input channels; an MLP
    takes a flattened square image: 3 channels when its input width is 3·s², else 1 channel."""
    try:
        _, layer = first_weight_layer(model)
    except ConfigError:
        layer = None
    if isinstance(layer, nn.Conv2d):
        s = size or 64
        return (int(layer.in_channels), s, s)
    if isinstance(layer, nn.Linear):
        d = int(layer.in_features)
        for c in (3, 1):
            s = math.isqrt(d // c)
            if d % c == 0 and s * s * c == d and (size is None or size == s):
                return (c, s, s)
        raise ConfigError(f"cannot read a square image shape from an input width of {d}")
    return (3, size or 64, size or 64)


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every named sub-module except containers: the layers a user may pick by name."""
    return {n: m for n, m in model.named_modules() if n and not list(m.children())}


def default_layers(model: nn.Module) -> list[str]:
    """Activation layers if the model has any (what a layer *outputs* after its non-linearity),
    else its conv/linear layers, in forward order."""
    layers = named_layers(model)
    acts = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU)
    names = [n for n, m in layers.items() if isinstance(m, acts)]
    return names or [n for n, m in layers.items() if isinstance(m, (nn.Conv2d, nn.Linear))]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    layers = dict(model.named_modules())
    if name not in layers or not name:
        known = ", ".join(named_layers(model)) or "none"
        raise ConfigError(f"unknown layer {name!r}; layers: {known}")
    return layers[name]


RECTIFIERS = (nn.ReLU, nn.ReLU6)


@contextmanager
def capture(
    model: nn.Module, names: list[str], before_relu: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named layers during forward passes inside the block.

    ``before_relu`` records a ReLU layer's *input* instead: the same maximiser wherever it is
    positive, and a gradient even where the ReLU is dead (activation maximisation needs one)."""
    out: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in names:
            layer = get_layer(model, name)

            pre = before_relu and isinstance(layer, RECTIFIERS)

            def hook(_m, i, o, name=name, pre=pre):
                o = i if pre else o
                out[name] = o[0] if isinstance(o, (tuple, list)) else o

            try:
                handles.append(layer.register_forward_hook(hook))
            except Exception as e:  # TorchScript modules refuse hooks
                raise ConfigError(
                    f"cannot watch layer {name!r} ({type(e).__name__}): layer views need a "
                    "state_dict checkpoint with its architecture, not a TorchScript file"
                ) from e
        yield out
    finally:
        for h in handles:
            h.remove()


def logits_of(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Depthwise Gaussian blur of an NCHW tensor (reflect padding); sigma ≤ 0 returns x."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < r:  # image smaller than the kernel: shrink the kernel
        k = k[r - pad : r + pad + 1]
        k = k / k.sum()
        r = pad
    if r == 0:
        return x
    y = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    y = torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate an NCHW tensor by (dy, dx) px, filling with the edge pixels.

    Jitter with ``torch.roll`` would wrap a corner's paint to the opposite corner, which is
    exactly the kind of place a tell lives; edge filling keeps places where they are."""
    if dy == 0 and dx == 0:
        return x
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    y = torch.nn.functional.pad(x, (p, p, p, p), mode="replicate")
    return y[..., p - dy : p - dy + h, p - dx : p - dx + w]


def signed_to_unit(a: np.ndarray) -> np.ndarray:
    """Signed values → [0, 1] with 0 at mid-grey, scaled by the largest magnitude (so the sign
    and relative size stay readable)."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float64))
    peak = float(np.abs(a).max()) if a.size else 0.0
    return (0.5 + 0.5 * a / peak) if peak > 0 else np.full_like(a, 0.5)


def minmax(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(np.asarray(a, dtype=np.float64))
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """HWC with 1 or 3 channels (or HW) → HWC RGB for display."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img


def batch_tensor(images: np.ndarray) -> torch.Tensor:
    """NHWC numpy in [0, 1] → NCHW float32 tensor."""
    x = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
    if x.ndim == 3:
        x = x[..., None]
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def to_hwc(x: torch.Tensor) -> np.ndarray:
    """NCHW tensor → NHWC float32 numpy."""
    return x.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode; parameters are left as they are (views only take input gradients)."""
    model.eval()
    return model
