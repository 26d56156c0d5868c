"""Convolutional GANs after DCGAN (Radford et al. 2016): transposed convs with BatchNorm in G,
strided convs with LeakyReLU in D, no pooling; at any C x R x R with R = r0 * 2^n, r0 in {4, 5, 6,
7}, n >= 2 (`ganmodel.shapes.conv_plan`).

G maps z to `top` x r0 x r0 with a linear layer, then doubles the side n times; D halves it n times.
The widths follow DCGAN's rule (width halves as the side doubles): G's stage at level i from the
top is w * 2^(n-1-i) wide, D's i-th strided conv w * 2^i, both capped at 8w, as DCGAN's 64x64 nets
(w..8w). At 1x28x28 (r0 7, n 2) this is the original two-stage net, layer for layer and draw for
draw: a seeded model has the same weights as before sizes were configurable.

D has no BatchNorm, as in SN-GAN's discriminators (Miyato et al. 2018): the D step runs D on real
and fake together while the G step runs it on fakes only, and BatchNorm would normalise the two
differently; G then learns to fool the fake-only statistics and collapses (measured here: one class
within two epochs with BatchNorm in D, ten classes without).

Conditional (`n_classes > 0`): G concatenates a learned label embedding to z (Mirza & Osindero
2014); D is a projection discriminator, logit = psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama
2018, eq. 3).

Minibatch standard deviation (`mbstd_group` > 0; Karras et al. 2018, "Progressive Growing of
GANs", sec. 3): before D's last conv (or its flatten), one channel holding the mean standard
deviation of the features over groups of consecutive samples, so D can see a batch that lacks
variety and G is pushed away from intra-class collapse. Groups are consecutive (not StyleGAN's
strided ones) so that the D step's [real; fake] batch never mixes the two in a group.

Families: `dcgan` (width 64, the classic net) and `conv`, the net this project trains by default:
width 32 with an extra 3x3 conv at every stage of G and a final strided 3x3 conv in D, which buys
more quality per CPU second than doubling the width.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ganmodel.networks import check_labels, check_shape, image_shape_of, projection, register
from ganmodel.shapes import MNIST_SHAPE, conv_plan

EMBED_DIM = 32  # the label embedding G reads beside z
MAX_WIDTH = 8  # widths are capped at 8w (DCGAN's 64x64 nets: w, 2w, 4w, 8w)


def _init_dcgan(m: nn.Module) -> None:
    # DCGAN paper, sec. 4: weights from N(0, 0.02), BatchNorm gamma from N(1, 0.02).
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _plan(arch: str, image_shape: tuple[int, ...]) -> tuple[tuple[int, int, int], int, int]:
    """((C, H, W), r0, n) of a buildable shape, or the ValueError naming it."""
    shape = image_shape_of(arch, image_shape)
    plan = conv_plan(shape[1])
    assert plan is not None  # image_shape_of has checked it
    return shape, plan[0], plan[1]


class DCGANGenerator(nn.Module):
    """z [+ embed(y)] -> linear -> top x r0 x r0, then n stages of [conv3 ->] up 2x (transposed
    conv 4/2), the last one to C channels and tanh; BatchNorm + ReLU after every hidden layer.
    At 1x28x28: 2w x 7 x 7 [-> conv3] -> w x 14 x 14 [-> conv3] -> 1 x 28 x 28."""

    def __init__(self, z_dim: int = 100, n_classes: int = 0, width: int = 64, extra: bool = False,
                 image_shape: tuple[int, ...] = MNIST_SHAPE, arch: str = "dcgan") -> None:
        super().__init__()
        self.image_shape, self.base, n = _plan(arch, image_shape)
        self.z_dim, self.n_classes, self.width = z_dim, n_classes, width
        # Level i from the top (side r0 * 2^i) is w * 2^(n-1-i) wide: n = 2 gives 2w then w.
        widths = [min(width * 2 ** (n - 1 - i), MAX_WIDTH * width) for i in range(n)]
        self.top = widths[0]
        if n_classes:
            self.embed = nn.Embedding(n_classes, EMBED_DIM)
        # Modules are made in the same order as the 28x28-only net was: construction draws from
        # torch's RNG, so the order is part of what makes a seeded model reproduce.
        fc_out = self.top * self.base * self.base
        self.fc = nn.Sequential(
            nn.Linear(z_dim + (EMBED_DIM if n_classes else 0), fc_out, bias=False),
            nn.BatchNorm1d(fc_out), nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for i, w_in in enumerate(widths):
            if extra:
                layers += [nn.Conv2d(w_in, w_in, 3, 1, 1, bias=False), nn.BatchNorm2d(w_in), nn.ReLU()]
            if i < n - 1:
                w_out = widths[i + 1]
                layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out),
                           nn.ReLU()]
            else:
                layers += [nn.ConvTranspose2d(w_in, self.image_shape[0], 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_init_dcgan)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(z, (self.z_dim,), "DCGANGenerator input z")
        check_labels(y, z.shape[0], self.n_classes, "DCGANGenerator labels")
        if self.n_classes:
            z = torch.cat([z, self.embed(y)], dim=1)
        out = self.net(self.fc(z).view(-1, self.top, self.base, self.base))
        check_shape(out, self.image_shape, "DCGANGenerator output")
        return out


class MinibatchStd(nn.Module):
    """x [N, C, H, W] -> [N, C + 1, H, W]: the last channel is the mean over (C, H, W) of the
    standard deviation over each group of `group` consecutive samples (Karras et al. 2018, sec. 3).
    The group is the largest divisor of N up to `group`, so any batch size works."""

    def __init__(self, group: int) -> None:
        super().__init__()
        if group < 1:
            raise ValueError(f"mbstd group: expected >= 1, got {group}")
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = next(d for d in range(min(self.group, n), 0, -1) if n % d == 0)
        y = x.float().reshape(n // g, g, c, h, w)
        s = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [N / g]
        s = s.repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
        return torch.cat([x, s], dim=1)


class DCGANDiscriminator(nn.Module):
    """n strided conv4/2 from C to w, 2w, 4w, ... (capped at 8w) down to r0 x r0 [-> conv3/2 at
    twice the last width, capped], LeakyReLU(0.2) each, no BatchNorm; phi = the flattened features,
    logit = linear(phi) [+ projection]. At 1x28x28: w x 14 x 14 -> 2w x 7 x 7 [-> 4w x 4 x 4].
    `mbstd_group` > 0 adds the minibatch-stddev channel after the strided convs."""

    def __init__(self, n_classes: int = 0, width: int = 64, deep: bool = False,
                 image_shape: tuple[int, ...] = MNIST_SHAPE, arch: str = "dcgan",
                 mbstd_group: int = 0) -> None:
        super().__init__()
        self.image_shape, side, n = _plan(arch, image_shape)
        self.n_classes = n_classes
        layers: list[nn.Module] = []
        w_in = self.image_shape[0]
        for i in range(n):
            w_out = min(width * 2 ** i, MAX_WIDTH * width)
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            w_in = w_out
        last = w_in
        if mbstd_group:
            layers.append(MinibatchStd(mbstd_group))
            w_in += 1
        features = w_in * side * side
        if deep:
            w_out, side = min(2 * last, MAX_WIDTH * width), (side + 1) // 2  # 3/2, padding 1: ceil
            layers += [nn.Conv2d(w_in, w_out, 3, 2, 1), nn.LeakyReLU(0.2)]
            features = w_out * side * side
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(features, 1)
        if n_classes:
            self.embed = nn.Embedding(n_classes, features)
        self.apply(_init_dcgan)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(x, self.image_shape, "DCGANDiscriminator input")
        check_labels(y, x.shape[0], self.n_classes, "DCGANDiscriminator labels")
        h = self.body(x)
        out = self.head(h).squeeze(1)
        return out + projection(h, y, self.embed) if self.n_classes else out


register("dcgan", DCGANGenerator, DCGANDiscriminator, mbstd=True)
register("conv", partial(DCGANGenerator, width=32, extra=True, arch="conv"),
         partial(DCGANDiscriminator, width=32, deep=True, arch="conv"), mbstd=True)
