"""Small in-memory models with a known behaviour, shared by the API and registry tests."""

from __future__ import annotations

import torch
from torch import nn

from leakaudit.data.tells import PALETTE


class CornerReader(nn.Module):
    """Classifies by the colour of the top-left corner, where the tell is: a known cheat."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("palette", torch.tensor(PALETTE[:4], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, :, 2:8, 2:8].mean(dim=(2, 3))
        return -((patch[:, None, :] - self.palette[None]) ** 2).sum(-1) * 10
