"""Figures people look at: sample grids (PIL) and offline plots (matplotlib, Agg).

`dvc plots show` needs a CDN for its vega charts; these PNGs do not."""

from __future__ import annotations

import csv
import math
import os
from typing import BinaryIO

import torch

CHANNELS = (1, 3)  # greyscale (PNG mode L) or RGB


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] not in CHANNELS:
        raise ValueError(f"expected images [B, C, H, W] with C 1 or 3, got {list(images.shape)}")


def shrink_tiles(images: torch.Tensor, max_tile: int) -> torch.Tensor:
    """`images` [B, C, H, W] averaged down by the smallest integer factor that brings the longer
    side to at most `max_tile` px (unchanged when it already fits)."""
    factor = -(-max(images.shape[-2:]) // max_tile)
    if factor <= 1:
        return images
    from torch.nn.functional import interpolate

    size = (images.shape[-2] // factor, images.shape[-1] // factor)
    return interpolate(images.detach().float(), size=size, mode="area")


def make_grid(images: torch.Tensor, nrow: int | None = None, max_tile: int | None = None) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] -> uint8 grid (padding 2, white background lines): [H', W'] for
    C 1, [H', W', 3] for C 3. `max_tile` shrinks bigger tiles first (`shrink_tiles`)."""
    from torchvision.utils import make_grid as tv_grid

    _check_images(images)
    if max_tile is not None:
        images = shrink_tiles(images, max_tile)
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = tv_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=2,
                   normalize=True, value_range=(-1, 1), pad_value=1.0)
    grid = grid.mul(255).round().to(torch.uint8)
    # torchvision repeats a single channel three times: greyscale keeps one, as before colour.
    return grid[0] if images.shape[1] == 1 else grid.permute(1, 2, 0).contiguous()


def grid_size(n: int, image_hw: tuple[int, int], nrow: int | None = None) -> tuple[int, int]:
    """(width, height) in px of `make_grid`'s grid of `n` images of `image_hw` (H, W)."""
    if n == 1:  # torchvision returns a lone image as it is, unpadded
        return image_hw[1], image_hw[0]
    nrow = min(n, nrow or max(1, int(math.ceil(math.sqrt(n)))))
    rows = -(-n // nrow)
    return nrow * (image_hw[1] + 2) + 2, rows * (image_hw[0] + 2) + 2


def _png(pixels: torch.Tensor, path: str | os.PathLike[str] | BinaryIO) -> None:
    from PIL import Image

    Image.fromarray(pixels.numpy(), mode="L" if pixels.ndim == 2 else "RGB").save(path, format="PNG")


def save_grid(images: torch.Tensor, path: str | os.PathLike[str] | BinaryIO, nrow: int | None = None,
              max_tile: int | None = None) -> None:
    """Save a sample grid PNG: mode L for greyscale images, RGB for colour ones."""
    _png(make_grid(images, nrow, max_tile), path)


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] -> uint8 [B, C, H, W], the grid's mapping ((x + 1) / 2 * 255, rounded)."""
    _check_images(images)
    x = images.detach().float().cpu().clamp(-1, 1)
    return x.add(1).div(2).mul(255).round().to(torch.uint8)


def save_image(pixels: torch.Tensor, path: str | os.PathLike[str] | BinaryIO) -> None:
    """One uint8 image [C, H, W] (`to_pixels`) as a PNG: mode L for C 1, RGB for C 3."""
    _png(pixels[0] if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).contiguous(), path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(confusion: torch.Tensor, classes: list[str], path: str | os.PathLike[str],
                  title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5.5), dpi=100)
    cm = confusion.float()
    norm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j] > 0:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def curves_png(csv_path: str | os.PathLike[str], path: str | os.PathLike[str], title: str) -> None:
    """Loss curves (and FID over epochs, when present) from the train stage's CSV."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    plt = _plt()
    has_fid = any(r.get("fid") for r in rows)
    fig, axes = plt.subplots(1, 2 if has_fid else 1, figsize=(10 if has_fid else 6, 4), dpi=100,
                             squeeze=False)
    epochs = [int(r["epoch"]) for r in rows]
    ax = axes[0][0]
    for key in ("d_loss", "g_loss"):
        ax.plot(epochs, [float(r[key]) for r in rows], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title(title, fontsize=9)
    if has_fid:
        pts = [(int(r["epoch"]), float(r["fid"])) for r in rows if r.get("fid")]
        ax2 = axes[0][1]
        ax2.plot(*zip(*pts, strict=True), marker="o", color="tab:red")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("FID (classifier features)")
        ax2.set_title("quick FID during training", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def class_histogram_png(rows: list[dict[str, str | float]], path: str | os.PathLike[str], title: str,
                        min_relative_share: float) -> None:
    """Generated vs real class shares as paired horizontal bars; a dotted mark per class at the
    share below which the class does not count as covered (mode collapse at a glance)."""
    import numpy as np

    plt = _plt()
    names = [str(r["class"]) for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.6), dpi=100)
    classified = all("real_classified" in r for r in rows)
    h = 0.27 if classified else 0.4  # two or three bars per class
    ax.barh(y - h / 2 * (2 if classified else 1), [float(r["real"]) for r in rows], height=h,
            color="tab:gray", label="real (labels)")
    if classified:  # what a perfect generator would score: held-out real images, as classified
        ax.barh(y, [float(r["real_classified"]) for r in rows], height=h, color="silver",
                label="real held-out, as classified")
    gy = y + h / 2 * (2 if classified else 1)
    ax.barh(gy, [float(r["generated"]) for r in rows], height=h, color="tab:blue", label="generated")
    ax.scatter([min_relative_share * float(r["real"]) for r in rows], gy, marker="|", s=120,
               color="tab:red", label=f"covered from ({min_relative_share:g} x real)")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share of images, as classified")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
