"""DCGAN for 28x28 images (Radford et al. 2016): transposed convs with BatchNorm in G,
strided convs with LeakyReLU in D, no pooling, no BatchNorm on D's input layer."""

from __future__ import annotations

import torch
from torch import nn

from ganmodel.networks import IMAGE_SHAPE, check_shape, register


def _init_dcgan(m: nn.Module) -> None:
    # DCGAN paper, sec. 4: weights from N(0, 0.02), BatchNorm gamma from N(1, 0.02).
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.fc = nn.Sequential(
            nn.Linear(z_dim, 2 * width * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU(),
        )
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),  # 7 -> 14
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1),  # 14 -> 28
            nn.Tanh(),
        )
        self.width = width
        self.apply(_init_dcgan)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_shape(z, (self.z_dim,), "DCGANGenerator input z")
        h = self.fc(z).view(-1, 2 * self.width, 7, 7)
        out = self.net(h)
        check_shape(out, IMAGE_SHAPE, "DCGANGenerator output")
        return out


class DCGANDiscriminator(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),  # 28 -> 14
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),  # 14 -> 7
            nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1),
        )
        self.apply(_init_dcgan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, IMAGE_SHAPE, "DCGANDiscriminator input")
        return self.net(x).squeeze(1)


register("dcgan", DCGANGenerator, DCGANDiscriminator)
