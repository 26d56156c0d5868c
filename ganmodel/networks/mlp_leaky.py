"""The seed's MLP widths with the standard stabilisers of MLP GANs: LeakyReLU(0.2) everywhere,
BatchNorm in G's hidden layers, Dropout(0.3) in D (Radford et al. 2016, sec. 3; Salimans et al.
2016 for D regularisation). Same parameter budget as the seed, far less prone to collapse on
small datasets such as mnist5k. Conditional as `mlp`: one-hot y into G, projection D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganmodel.networks import check_labels, check_shape, image_shape_of, projection, register
from ganmodel.shapes import MNIST_SHAPE


class LeakyMLPGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, n_classes: int = 0,
                 image_shape: tuple[int, ...] = MNIST_SHAPE) -> None:
        super().__init__()
        self.image_shape = image_shape_of("mlp_leaky", image_shape)  # 1x28x28 only: 784 = 28 * 28
        self.z_dim, self.n_classes = z_dim, n_classes

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.LeakyReLU(0.2)]

        self.model = nn.Sequential(*block(z_dim + n_classes, 256), *block(256, 512), *block(512, 1024),
                                   nn.Linear(1024, 784), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(z, (self.z_dim,), "LeakyMLPGenerator input z")
        check_labels(y, z.shape[0], self.n_classes, "LeakyMLPGenerator labels")
        if self.n_classes:
            z = torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], dim=1)
        return self.model(z).view(-1, *self.image_shape)


class LeakyMLPDiscriminator(nn.Module):
    def __init__(self, n_classes: int = 0, image_shape: tuple[int, ...] = MNIST_SHAPE) -> None:
        super().__init__()
        self.image_shape = image_shape_of("mlp_leaky", image_shape)
        self.n_classes = n_classes
        self.model = nn.Sequential(
            nn.Linear(784, 1024), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(1024, 512), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(256, 1),
        )
        if n_classes:
            self.embed = nn.Embedding(n_classes, 256)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(x, self.image_shape, "LeakyMLPDiscriminator input")
        check_labels(y, x.shape[0], self.n_classes, "LeakyMLPDiscriminator labels")
        if not self.n_classes:
            return self.model(x.flatten(1)).squeeze(1)
        h = self.model[:-1](x.flatten(1))
        return self.model[-1](h).squeeze(1) + projection(h, y, self.embed)


register("mlp_leaky", LeakyMLPGenerator, LeakyMLPDiscriminator)
