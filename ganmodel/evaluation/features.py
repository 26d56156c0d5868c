"""Features and logits of the evaluation feature network, and seeded samples from a generator.

Every metric in this package works on these float64 tensors, so images are run through the
classifier exactly once per evaluation (Heusel et al. 2017 compute FID on such activations).
"""

from __future__ import annotations

import torch
from torch import nn

from ganmodel.data.prepared import to_unit_range
from ganmodel.errors import GanModelError

# Generator outputs pass through tanh; a little slack covers float rounding, while images in
# [0, 1] or [0, 255] passed by mistake still fail instead of giving a plausible wrong FID.
_RANGE_SLACK = 1e-3


def _check_images(images: torch.Tensor) -> None:
    # The shape the feature network takes is checked at its boundary (`check_shape`).
    if images.ndim != 4:
        raise ValueError(f"images: expected shape [N, C, H, W], got {list(images.shape)}")
    if images.dtype == torch.uint8 or images.numel() == 0:
        return
    if not images.is_floating_point():
        raise ValueError(f"images: expected uint8 or float, got {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1 - _RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise ValueError(f"images: float images must lie in [-1, 1], got [{lo:.3g}, {hi:.3g}]")


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def extract(model: nn.Module, images: torch.Tensor, batch_size: int,
            device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, D] and class logits [N, C] of `images`, both float64 on the CPU, from a feature
    network (`ganmodel.networks.featurenet`); C is 0 for one without a class head.

    `images` are uint8 [N, C, H, W] in [0, 255] or float in [-1, 1]; they are moved to
    `device` (default: the model's device) one batch at a time, so a large set stays on the CPU.
    The model runs in eval mode (BatchNorm running stats, no dropout); its mode is restored.
    """
    _check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else _model_device(model)
    if _model_device(model) != device:
        raise ValueError(f"classifier lives on {_model_device(model)}, not on the requested {device}")
    n = images.shape[0]
    feats = torch.empty(n, model.feature_dim, dtype=torch.float64)
    logits = torch.empty(n, model.n_classes, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for lo in range(0, n, batch_size):
            x = images[lo : lo + batch_size].to(device)
            x = to_unit_range(x) if x.dtype == torch.uint8 else x.float()
            f, lg = model.features_and_logits(x)
            feats[lo : lo + batch_size] = f.double().cpu()
            logits[lo : lo + batch_size] = lg.double().cpu()
    finally:
        model.train(was_training)
    return feats, logits


def is_conditional(generator: nn.Module) -> bool:
    return int(getattr(generator, "n_classes", 0) or 0) > 0


@torch.no_grad()
def sample_images(generator: nn.Module, n: int, seed: int, batch_size: int = 500,
                  labels: torch.Tensor | None = None) -> torch.Tensor:
    """`n` images (float [n, C, H, W] in [-1, 1], on the CPU) from z ~ N(0, I) seeded by `seed`;
    a conditional generator is asked for `labels` [n] (required for it, refused otherwise).

    All of z is drawn at once from a CPU `torch.Generator`, so the samples depend only on the
    seed and the weights: not on the batch size, the device, or the global RNG (left untouched).
    The generator runs in eval mode (BatchNorm running stats) and its mode is restored.
    """
    z_dim = getattr(generator, "z_dim", None)
    if not isinstance(z_dim, int):
        raise GanModelError(f"generator {type(generator).__name__}: has no integer z_dim attribute")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
    if is_conditional(generator) != (labels is not None):
        raise ValueError("labels: a conditional generator needs one per sample, an unconditional one none")
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels: expected shape [{n}], got {list(labels.shape)}")
    device = _model_device(generator)
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    parts = []
    was_training = generator.training
    generator.eval()
    try:
        for lo in range(0, n, batch_size):
            zb = z[lo : lo + batch_size].to(device)
            x = generator(zb) if labels is None else generator(zb, labels[lo : lo + batch_size].to(device))
            parts.append(x.float().cpu())
    finally:
        generator.train(was_training)
    return torch.cat(parts)


def proportional_labels(real_labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` class labels in the proportions of `real_labels`: a seeded random n-subset of them (a
    conditional generator is asked for the classes real data has, as often as it has them)."""
    if n > real_labels.shape[0]:
        raise ValueError(f"n: {n} labels requested from {real_labels.shape[0]}")
    idx = torch.randperm(real_labels.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return real_labels[idx].cpu().long()
