"""A small conditional generator and discriminator for 1×16×16 digits (label → one row of the grid)."""

from __future__ import annotations

import torch
from torch import nn

from engine.model.build import BUILD_NETWORK_REGISTRY


@BUILD_NETWORK_REGISTRY.register()
class DigitsGenerator(nn.Module):
    """(noise, label) → image in [0, 1]: a linear stem to 4×4, two upsampling convolutions to 16×16."""

    def __init__(self, z_dim: int = 32, width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.z_dim, self.width = z_dim, width
        self.embed = nn.Embedding(num_classes, z_dim)
        self.stem = nn.Sequential(nn.Linear(2 * z_dim, width * 4 * 4), nn.LeakyReLU(0.2))
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(width, width // 2, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2), nn.Conv2d(width // 2, 1, 3, padding=1), nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.stem(torch.cat([z, self.embed(labels)], dim=1))
        return self.body(h.view(len(z), self.width, 4, 4))


@BUILD_NETWORK_REGISTRY.register()
class DigitsDiscriminator(nn.Module):
    """(image, label) → real/fake logit; the label enters as a projection on the pooled features."""

    def __init__(self, width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width // 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(width, 1)
        self.embed = nn.Embedding(num_classes, width)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(images * 2 - 1)
        return self.head(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)
