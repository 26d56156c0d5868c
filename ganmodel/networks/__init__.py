"""Network families, chosen by name. Each family module registers its generator and discriminator.

Conventions: generators map z [B, z_dim] (and, when conditional, labels y [B]) to images
[B, C, H, W] in [-1, 1]; discriminators map images (and labels) to logits [B] (losses apply the
sigmoid, so hinge/WGAN share the nets). A family is conditional with `n_classes > 0`: G takes the
label in (Mirza & Osindero 2014), D is a projection discriminator (Miyato & Koyama 2018). Every
generator carries `z_dim`, `n_classes` (0: unconditional) and `image_shape` ((C, H, W)), which is
all that samples it; every network checks the tensors at its boundary against its `image_shape`.
Which shapes a family builds is `ganmodel.shapes.buildable`; others raise a one-line ValueError.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ganmodel.shapes import MNIST_SHAPE, buildable

ImageShape = tuple[int, int, int]  # (C, H, W)

GENERATORS: dict[str, Callable[..., nn.Module]] = {}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {}
MBSTD_FAMILIES: set[str] = set()  # families whose D takes `mbstd_group` (ganmodel.choices.MBSTD_ARCHS)


def register(name: str, generator: Callable[..., nn.Module], discriminator: Callable[..., nn.Module],
             mbstd: bool = False) -> None:
    GENERATORS[name] = generator
    DISCRIMINATORS[name] = discriminator
    if mbstd:
        MBSTD_FAMILIES.add(name)


def build_generator(arch: str, z_dim: int, n_classes: int = 0,
                    image_shape: tuple[int, ...] = MNIST_SHAPE) -> nn.Module:
    """G of family `arch` for images of `image_shape` (C, H, W); a ValueError naming the shape
    when the family cannot build it."""
    return GENERATORS[arch](z_dim=z_dim, n_classes=n_classes, image_shape=image_shape)


def build_discriminator(arch: str, spectral_norm: bool = False, n_classes: int = 0,
                        image_shape: tuple[int, ...] = MNIST_SHAPE, mbstd_group: int = 0) -> nn.Module:
    """D of family `arch` for images of `image_shape`; with `spectral_norm`, every linear/conv/
    embedding weight is divided by its largest singular value (Miyato et al. 2018, "Spectral
    Normalization for GANs", eq. 8); `mbstd_group` > 0 adds a minibatch-stddev channel (Karras et
    al. 2018, sec. 3; the conv families only, `MBSTD_FAMILIES`)."""
    if mbstd_group and arch not in MBSTD_FAMILIES:
        raise ValueError(f"arch {arch}: no minibatch-stddev layer (mbstd_group); "
                         f"only {', '.join(sorted(MBSTD_FAMILIES))} have one")
    kwargs = {"mbstd_group": mbstd_group} if mbstd_group else {}
    d = DISCRIMINATORS[arch](n_classes=n_classes, image_shape=image_shape, **kwargs)
    if spectral_norm:
        from torch.nn.utils.parametrizations import spectral_norm as sn

        for m in list(d.modules()):
            if isinstance(m, nn.Linear | nn.Conv2d | nn.Embedding):
                sn(m)
    return d


def image_shape_of(arch: str, image_shape: tuple[int, ...]) -> ImageShape:
    """`image_shape` as a (C, H, W) tuple of ints, or the ValueError of `ganmodel.shapes.buildable`
    when family `arch` cannot build it (before any layer is made)."""
    if (reason := buildable(arch, image_shape)) is not None:
        raise ValueError(f"arch {arch} {reason}")
    c, h, w = (int(s) for s in image_shape)
    return c, h, w


def check_shape(t: torch.Tensor, tail: tuple[int, ...], what: str) -> None:
    """Fail loudly when a tensor entering or leaving a network has the wrong trailing shape."""
    if t.ndim != len(tail) + 1 or tuple(t.shape[1:]) != tail:
        raise ValueError(f"{what}: expected shape [B, {', '.join(map(str, tail))}], got {list(t.shape)}")


def check_labels(y: torch.Tensor | None, n: int, n_classes: int, what: str) -> None:
    """A conditional net needs one integer label in [0, n_classes) per row; others take none."""
    if n_classes == 0:
        if y is not None:
            raise ValueError(f"{what}: an unconditional network takes no labels")
        return
    if y is None or y.ndim != 1 or y.shape[0] != n or y.dtype not in (torch.int64, torch.int32):
        got = "none" if y is None else f"{y.dtype} {list(y.shape)}"
        raise ValueError(f"{what}: expected integer labels [{n}], got {got}")


def class_rows(n: int, classes: list[int]) -> torch.Tensor:
    """Labels for `n` samples of `classes`, class after class in equal runs (ceil(n / len) each,
    the last one cut short): laid out `ceil(n / len)` per row, a sheet has one row per class."""
    per = -(-n // len(classes))
    return torch.tensor(classes, dtype=torch.long).repeat_interleave(per)[:n]


def projection(h: torch.Tensor, y: torch.Tensor, embed: nn.Embedding) -> torch.Tensor:
    """The class term of a projection discriminator: <embed(y), phi(x)> (Miyato & Koyama 2018, eq. 3)."""
    return (embed(y) * h).sum(dim=1)


# Importing the family modules fills the registries (explicit, no string imports).
from ganmodel.networks import dcgan, mlp, mlp_leaky  # noqa: E402,F401
