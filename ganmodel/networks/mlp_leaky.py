"""The seed's MLP widths with the standard stabilisers of MLP GANs: LeakyReLU(0.2) everywhere,
BatchNorm in G's hidden layers, Dropout(0.3) in D (Radford et al. 2016, sec. 3; Salimans et al.
2016 for D regularisation). Same parameter budget as the seed, far less prone to collapse on
small datasets such as mnist5k."""

from __future__ import annotations

import torch
from torch import nn

from ganmodel.networks import IMAGE_SHAPE, check_shape, register


class LeakyMLPGenerator(nn.Module):
    def __init__(self, z_dim: int = 100) -> None:
        super().__init__()
        self.z_dim = z_dim

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.LeakyReLU(0.2)]

        self.model = nn.Sequential(*block(z_dim, 256), *block(256, 512), *block(512, 1024),
                                   nn.Linear(1024, 784), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_shape(z, (self.z_dim,), "LeakyMLPGenerator input z")
        return self.model(z).view(-1, *IMAGE_SHAPE)


class LeakyMLPDiscriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(784, 1024), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(1024, 512), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(256, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, IMAGE_SHAPE, "LeakyMLPDiscriminator input")
        return self.model(x.flatten(1)).squeeze(1)


register("mlp_leaky", LeakyMLPGenerator, LeakyMLPDiscriminator)
