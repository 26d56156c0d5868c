"""Adversarial losses, chosen by name. Each takes discriminator logits.

`d_loss(real_logits, fake_logits)` and `g_loss(fake_logits)` return scalars averaged over the
local batch, so DDP's gradient mean equals the global-batch gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class GANLoss:
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


def _bce_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # Goodfellow et al. 2014, eq. 1; two means summed, exactly as the seed's real_loss + fake_loss.
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def _bce_g(fake: torch.Tensor) -> torch.Tensor:
    # The non-saturating generator loss, -log D(G(z)) (Goodfellow et al. 2014, sec. 3).
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def _hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # Lim & Ye 2017; Miyato et al. 2018 (SN-GAN), eq. 16.
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def _hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def _wgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # Arjovsky et al. 2017 critic loss; the gradient penalty (Gulrajani et al. 2017) is added
    # by the training loop, which owns the interpolates.
    return fake.mean() - real.mean()


def _wgan_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


LOSSES: dict[str, GANLoss] = {
    "bce": GANLoss(_bce_d, _bce_g),
    "hinge": GANLoss(_hinge_d, _hinge_g),
    "wgan_gp": GANLoss(_wgan_d, _wgan_g),
}

GRADIENT_PENALTY = {"wgan_gp": 10.0}

Critic = Callable[[torch.Tensor], torch.Tensor]  # images -> logits (D with its labels and augmentation)


def gradient_penalty(d: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates (Gulrajani et al. 2017, eq. 3)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = d(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def r1_penalty(d: Critic, real: torch.Tensor) -> torch.Tensor:
    """R1: E[||grad_x D(x)||^2] on real data (Mescheder et al. 2018, "Which Training Methods for GANs
    do actually Converge?", eq. 9); the loop weighs it by gamma / 2. The gradient is taken with
    respect to the images before D's augmentation, as in StyleGAN2-ADA."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    return grad.flatten(1).square().sum(dim=1).mean()
