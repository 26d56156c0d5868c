"""Network families, chosen by name. Each family module registers its generator and discriminator.

Conventions: generators map z [B, z_dim] to images [B, 1, 28, 28] in [-1, 1]; discriminators map
images [B, 1, 28, 28] to logits [B] (losses apply the sigmoid, so hinge/WGAN share the nets).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

IMAGE_SHAPE = (1, 28, 28)

GENERATORS: dict[str, Callable[..., nn.Module]] = {}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, generator: Callable[..., nn.Module], discriminator: Callable[..., nn.Module]) -> None:
    GENERATORS[name] = generator
    DISCRIMINATORS[name] = discriminator


def build_generator(arch: str, z_dim: int) -> nn.Module:
    return GENERATORS[arch](z_dim=z_dim)


def build_discriminator(arch: str, spectral_norm: bool = False) -> nn.Module:
    """D of family `arch`; with `spectral_norm`, every linear/conv weight is divided by its
    largest singular value (Miyato et al. 2018, "Spectral Normalization for GANs", eq. 8)."""
    d = DISCRIMINATORS[arch]()
    if spectral_norm:
        from torch.nn.utils.parametrizations import spectral_norm as sn

        for m in list(d.modules()):
            if isinstance(m, nn.Linear | nn.Conv2d):
                sn(m)
    return d


def check_shape(t: torch.Tensor, tail: tuple[int, ...], what: str) -> None:
    """Fail loudly when a tensor entering or leaving a network has the wrong trailing shape."""
    if t.ndim != len(tail) + 1 or tuple(t.shape[1:]) != tail:
        raise ValueError(f"{what}: expected shape [B, {', '.join(map(str, tail))}], got {list(t.shape)}")


# Importing the family modules fills the registries (explicit, no string imports).
from ganmodel.networks import dcgan, mlp, mlp_leaky  # noqa: E402,F401
