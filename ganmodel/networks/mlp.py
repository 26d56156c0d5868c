"""The classic MLP GAN (the `seed` baseline), layer for layer as in the article's code.

G: 100 -> 256 -> 512 -> 1024 -> 784, ReLU, tanh.  D: 784 -> 1024 -> 512 -> 256 -> 1, ReLU.
Goodfellow et al. 2014, "Generative Adversarial Nets". The module layout (`model.<i>`) matches
the original, so state dicts load both ways; D returns the logit, and the final sigmoid of the
original lives in the BCE loss (BCEWithLogits == Sigmoid + BCELoss, but numerically stable).
"""

from __future__ import annotations

import torch
from torch import nn

from ganmodel.networks import IMAGE_SHAPE, check_shape, register


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int = 100) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.model = nn.Sequential(
            nn.Linear(z_dim, 256), nn.ReLU(),
            nn.Linear(256, 512), nn.ReLU(),
            nn.Linear(512, 1024), nn.ReLU(),
            nn.Linear(1024, 784), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_shape(z, (self.z_dim,), "MLPGenerator input z")
        return self.model(z).view(-1, *IMAGE_SHAPE)


class MLPDiscriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(784, 1024), nn.ReLU(),
            nn.Linear(1024, 512), nn.ReLU(),
            nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, IMAGE_SHAPE, "MLPDiscriminator input")
        return self.model(x.flatten(1)).squeeze(1)


register("mlp", MLPGenerator, MLPDiscriminator)
