"""Differentiable augmentation of everything D sees, chosen by name (DiffAugment: Zhao et al. 2020,
"Differentiable Augmentation for Data-Efficient GAN Training", sec. 3).

The same random transform family is applied to real and fake images, in D's step and in G's step;
being differentiable, G learns through it. Augmentation only changes what D sees, never what G
produces, so the generator's distribution is not shifted towards augmented images (sec. 3.1).

Per-image parameters are drawn for the *global* batch from the epoch's shared generator and each
rank takes its slice, so N DDP workers augment exactly as one worker does (`sample` then
`apply`). Images are in [-1, 1] with a black (-1) background, which is what translation and
cutout fill with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

BACKGROUND = -1.0
TRANSLATION_RATIO = 0.125  # up to 1/8 of the side, rounded: 4 px at 28 and 32 (DiffAugment's default)
CUTOUT_RATIO = 0.5  # a square of half the image side: DiffAugment's default


@dataclass(frozen=True)
class Op:
    """One augmentation: `draw(n, gen, device, size)` -> per-image parameters [n, k] for images
    `size` pixels wide; `apply(x, p)`."""

    draw: Callable[[int, torch.Generator, torch.device, int], torch.Tensor]
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _draw_translation(n: int, gen: torch.Generator, device: torch.device, size: int) -> torch.Tensor:
    s = int(size * TRANSLATION_RATIO + 0.5)
    return torch.randint(-s, s + 1, (n, 2), generator=gen, device=device)


def _apply_translation(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each image by (dy, dx) whole pixels, filling with the background."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1) - shift[:, 0].view(b, 1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - shift[:, 1].view(b, 1, 1)
    inside = ((rows >= 0) & (rows < h)).expand(b, h, w) & ((cols >= 0) & (cols < w)).expand(b, h, w)
    idx = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)  # [b, h, w] source pixel of each pixel
    flat = x.reshape(b, c, h * w).gather(2, idx.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)
    return torch.where(inside.unsqueeze(1), flat, torch.full_like(flat, BACKGROUND))


def _draw_cutout(n: int, gen: torch.Generator, device: torch.device, size: int) -> torch.Tensor:
    return torch.randint(0, size, (n, 2), generator=gen, device=device)  # the square's centre


def _apply_cutout(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Blank a square of side CUTOUT_RATIO x size around each centre (clipped at the borders)."""
    b, _, h, w = x.shape
    half = int(h * CUTOUT_RATIO + 0.5) // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    cy, cx = centre[:, 0].view(b, 1, 1), centre[:, 1].view(b, 1, 1)
    hole = ((rows - cy).abs() < half) & ((cols - cx).abs() < half)
    return x.masked_fill(hole.unsqueeze(1), BACKGROUND)


def _draw_color(n: int, gen: torch.Generator, device: torch.device, size: int) -> torch.Tensor:
    return torch.rand(n, 2, generator=gen, device=device)


def _apply_color(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Brightness shift in [-0.5, 0.5) and contrast scale in [0.5, 1.5) (DiffAugment's `color`,
    without saturation, which greyscale images do not have)."""
    x = x + (u[:, 0] - 0.5).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u[:, 1] + 0.5).view(-1, 1, 1, 1) + mean


AUGMENTATIONS: dict[str, Op] = {
    "translation": Op(_draw_translation, _apply_translation),
    "cutout": Op(_draw_cutout, _apply_cutout),
    "color": Op(_draw_color, _apply_color),
}


class DiffAugment:
    """A policy: the named augmentations, applied in order, to square images `size` pixels wide."""

    def __init__(self, names: tuple[str, ...] | list[str], size: int = 28) -> None:
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; expected some of {sorted(AUGMENTATIONS)}")
        self.names, self.size = tuple(names), size

    def __bool__(self) -> bool:
        return bool(self.names)

    def sample(self, n: int, gen: torch.Generator, device: torch.device) -> list[torch.Tensor]:
        """Parameters of every op for `n` images (the global batch), from the shared generator."""
        return [AUGMENTATIONS[name].draw(n, gen, device, self.size) for name in self.names]

    def __call__(self, x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        """Augment `x` [b, C, size, size] with per-image `params` (each [b, k], sliced for this rank)."""
        for name, p in zip(self.names, params, strict=True):
            if p.shape[0] != x.shape[0]:
                raise ValueError(f"{name}: {p.shape[0]} parameter rows for {x.shape[0]} images")
            x = AUGMENTATIONS[name].apply(x, p)
        return x


def take(params: list[torch.Tensor], lo: int, hi: int) -> list[torch.Tensor]:
    """Rows lo:hi of every op's parameters (one rank's slice of the global batch)."""
    return [p[lo:hi] for p in params]
