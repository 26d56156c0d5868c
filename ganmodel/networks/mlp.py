"""The classic MLP GAN (the `seed` baseline), layer for layer as in the article's code.

G: 100 -> 256 -> 512 -> 1024 -> 784, ReLU, tanh.  D: 784 -> 1024 -> 512 -> 256 -> 1, ReLU.
Goodfellow et al. 2014, "Generative Adversarial Nets". The module layout (`model.<i>`) matches
the original, so state dicts load both ways; D returns the logit, and the final sigmoid of the
original lives in the BCE loss (BCEWithLogits == Sigmoid + BCELoss, but numerically stable).

Conditional (`n_classes > 0`, not the article's): G reads [z, one_hot(y)] (Mirza & Osindero 2014,
sec. 4.1); D adds a projection of its last hidden layer onto an embedding of y.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganmodel.networks import check_labels, check_shape, image_shape_of, projection, register
from ganmodel.shapes import MNIST_SHAPE


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, n_classes: int = 0,
                 image_shape: tuple[int, ...] = MNIST_SHAPE) -> None:
        super().__init__()
        self.image_shape = image_shape_of("mlp", image_shape)  # 1x28x28 only: 784 = 28 * 28
        self.z_dim, self.n_classes = z_dim, n_classes
        self.model = nn.Sequential(
            nn.Linear(z_dim + n_classes, 256), nn.ReLU(),
            nn.Linear(256, 512), nn.ReLU(),
            nn.Linear(512, 1024), nn.ReLU(),
            nn.Linear(1024, 784), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(z, (self.z_dim,), "MLPGenerator input z")
        check_labels(y, z.shape[0], self.n_classes, "MLPGenerator labels")
        if self.n_classes:
            z = torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], dim=1)
        return self.model(z).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, n_classes: int = 0, image_shape: tuple[int, ...] = MNIST_SHAPE) -> None:
        super().__init__()
        self.image_shape = image_shape_of("mlp", image_shape)
        self.n_classes = n_classes
        self.model = nn.Sequential(
            nn.Linear(784, 1024), nn.ReLU(),
            nn.Linear(1024, 512), nn.ReLU(),
            nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, 1),
        )
        if n_classes:
            self.embed = nn.Embedding(n_classes, 256)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(x, self.image_shape, "MLPDiscriminator input")
        check_labels(y, x.shape[0], self.n_classes, "MLPDiscriminator labels")
        if not self.n_classes:
            return self.model(x.flatten(1)).squeeze(1)
        h = self.model[:-1](x.flatten(1))
        return self.model[-1](h).squeeze(1) + projection(h, y, self.embed)


register("mlp", MLPGenerator, MLPDiscriminator)
