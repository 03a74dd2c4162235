"""View 2: what chosen layers output for chosen images, one panel per channel.

Read with a forward hook, so it works for any ``nn.Module`` whose layers have names
(``leakaudit insight --layers`` lists them in errors). A channel that lights up only on the
tell's corner, for every image of a class, shows the network has a detector for it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from leakaudit.insight.common import batch_tensor, capture, default_layers


@torch.no_grad()
def feature_maps(
    model: nn.Module, images: np.ndarray, layers: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Outputs of ``layers`` (default: every activation layer) for NHWC ``images`` in [0, 1].

    Returns ``{layer: (N, channels, h, w)}``; a layer with a flat output (Linear) gives
    ``(N, units, 1, 1)`` so every layer can be drawn the same way."""
    model.eval()
    names = list(layers) if layers else default_layers(model)
    with capture(model, names) as seen:
        model(batch_tensor(images))
    out = {}
    for name in names:
        a = seen[name].detach().float()
        if a.dim() == 2:
            a = a[:, :, None, None]
        out[name] = a.contiguous().numpy().copy()
    return out
