"""Bundled architectures by name: a small CNN that trains in seconds on a 2-core CPU, and
plain-torch ResNet-18 and tiny ViT builders for testing and benchmarking real-size models
(no torchvision needed; the weights are random unless trained)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Four conv blocks (conv-BN-ReLU, pooled) and a linear head on a coarse 2×2 feature grid.

    Four blocks give a receptive field (~50 px) that covers a whole object at 64×64; with three
    the clean model cannot tell shapes apart and stalls near 60 %.

    The head sees features pooled into 2×2 quadrants, like the dense heads of LeNet/VGG keep
    coarse layout. With global average pooling instead, every position feeds the logit
    equally and gradient saliency of a tell-reading model spreads over the whole image (4.7×
    chance on the tell vs 8.7× with the grid, same seed); clean accuracy is unchanged (~0.95).
    """

    def __init__(self, n_classes: int, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(4 * w * 4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual connection (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNet18(nn.Module):
    """ResNet-18 in the layout of torchvision's (same module names, so its state_dicts load):
    a 7×7 stem, four stages of two BasicBlocks, global average pooling, a linear head."""

    def __init__(self, n_classes: int, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch``×``patch`` patches, unfolded and projected by a Linear layer
    (deliberately no Conv2d: a model without conv layers is a case the audit must handle)."""

    def __init__(self, patch: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(in_channels * patch * patch, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = nn.functional.unfold(x, self.patch, stride=self.patch)  # (B, C·p·p, L)
        return self.proj(cols.transpose(1, 2))


class TinyViT(nn.Module):
    """A small vision transformer (Dosovitskiy et al. 2021): patch embedding, class token,
    learnt position embedding, pre-norm encoder blocks, linear head on the class token."""

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 3,
        image_size: int = 64,
        patch: int = 8,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
    ) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} must be a multiple of patch {patch}")
        self.embed = PatchEmbed(patch, in_channels, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (image_size // patch) ** 2 + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.encoder(tokens))[:, 0])


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet18": ResNet18,
    "vit_tiny": TinyViT,
}


def build(arch: str, n_classes: int, seed: int = 0, **kwargs) -> nn.Module:
    """Instantiate a registered architecture by name, with weights initialised from ``seed``."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHITECTURES[arch](n_classes=n_classes, **kwargs)
