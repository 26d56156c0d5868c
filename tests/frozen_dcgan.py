"""The conv families as they were before sizes were configurable (main cbb6c06,
ganmodel/networks/dcgan.py), frozen verbatim but for the imports: the reference that
tests/test_network_sizes.py holds the 1x28x28 nets to, weight for weight. Not imported by ganmodel."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ganmodel.networks import check_labels, check_shape, projection

IMAGE_SHAPE = (1, 28, 28)

EMBED_DIM = 32  # the label embedding G reads beside z


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
    """z [+ embed(y)] -> linear -> 2w x 7 x 7 [-> conv3] -> up 2x: w x 14 x 14 [-> conv3] -> up 2x:
    1 x 28 x 28, tanh. BatchNorm + ReLU after every hidden layer."""

    def __init__(self, z_dim: int = 100, n_classes: int = 0, width: int = 64, extra: bool = False) -> None:
        super().__init__()
        self.z_dim, self.n_classes, self.width = z_dim, n_classes, width
        if n_classes:
            self.embed = nn.Embedding(n_classes, EMBED_DIM)
        w2 = 2 * width
        self.fc = nn.Sequential(
            nn.Linear(z_dim + (EMBED_DIM if n_classes else 0), w2 * 7 * 7, bias=False),
            nn.BatchNorm1d(w2 * 7 * 7), nn.ReLU(),
        )
        layers: list[nn.Module] = []
        if extra:
            layers += [nn.Conv2d(w2, w2, 3, 1, 1, bias=False), nn.BatchNorm2d(w2), nn.ReLU()]
        layers += [nn.ConvTranspose2d(w2, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]  # 14
        if extra:
            layers += [nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh()]  # 28
        self.net = nn.Sequential(*layers)
        self.apply(_init_dcgan)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(z, (self.z_dim,), "DCGANGenerator input z")
        check_labels(y, z.shape[0], self.n_classes, "DCGANGenerator labels")
        if self.n_classes:
            z = torch.cat([z, self.embed(y)], dim=1)
        out = self.net(self.fc(z).view(-1, 2 * self.width, 7, 7))
        check_shape(out, IMAGE_SHAPE, "DCGANGenerator output")
        return out


class DCGANDiscriminator(nn.Module):
    """conv4/2: w x 14 x 14 -> conv4/2: 2w x 7 x 7 [-> conv3/2: 4w x 4 x 4], LeakyReLU(0.2) each,
    no BatchNorm; phi = the flattened features, logit = linear(phi) [+ projection]."""

    def __init__(self, n_classes: int = 0, width: int = 64, deep: bool = False) -> None:
        super().__init__()
        self.n_classes = n_classes
        layers: list[nn.Module] = [nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2)]
        features = 2 * width * 7 * 7
        if deep:
            layers += [nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.LeakyReLU(0.2)]
            features = 4 * width * 4 * 4
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(features, 1)
        if n_classes:
            self.embed = nn.Embedding(n_classes, features)
        self.apply(_init_dcgan)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(x, IMAGE_SHAPE, "DCGANDiscriminator input")
        check_labels(y, x.shape[0], self.n_classes, "DCGANDiscriminator labels")
        h = self.body(x)
        out = self.head(h).squeeze(1)
        return out + projection(h, y, self.embed) if self.n_classes else out


# The families as main registered them: arch -> (G, D) builders.
FROZEN = {
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
    "conv": (partial(DCGANGenerator, width=32, extra=True), partial(DCGANDiscriminator, width=32, deep=True)),
}
