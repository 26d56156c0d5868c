"""Image grids for generator samples."""

from __future__ import annotations

import math
import os

import torch


def make_grid(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """[B, 1, H, W] in [-1, 1] -> uint8 [H', W'] grid (padding 2, white background lines)."""
    from torchvision.utils import make_grid as tv_grid

    if images.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got {list(images.shape)}")
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = tv_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=2,
                   normalize=True, value_range=(-1, 1), pad_value=1.0)
    return grid[0].mul(255).round().to(torch.uint8)


def save_grid(images: torch.Tensor, path: str | os.PathLike[str], nrow: int | None = None) -> None:
    """Save a sample grid PNG."""
    from PIL import Image

    Image.fromarray(make_grid(images, nrow).numpy(), mode="L").save(path, format="PNG")
