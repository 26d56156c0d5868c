"""Stratified train/val/test splits of raw data: the one place images are assigned to a split.

Apart from `ganmodel.data.prepared` (the split files every stage reads), so that reading prepared
data does not depend on the raw sources that only the prepare stage uses.
"""

from __future__ import annotations

import numpy as np
import torch

from ganmodel.data.prepared import Split
from ganmodel.data.sources import RawData
from ganmodel.errors import GanModelError


def class_split_sizes(n: int, fractions: list[float]) -> list[int]:
    """How many of a class's `n` images each part gets: `round(f * n)` per fraction, the rest first."""
    held = [round(f * n) for f in fractions]
    return [n - sum(held), *held]


def _stratified(labels: np.ndarray, fractions: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Split indices per class by `fractions` (the remainder is the first part), then shuffle."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.cumsum(class_split_sizes(len(idx), fractions)[1:])
        start = len(idx) - cuts[-1]
        parts[0].append(idx[:start])
        bounds = [start, *(start + cuts[:-1]), len(idx)]
        for i in range(len(fractions)):
            parts[i + 1].append(idx[bounds[i] : bounds[i + 1]])
    return [rng.permutation(np.concatenate(p)) for p in parts]


def make_splits(raw: RawData, val_fraction: float, test_fraction: float, seed: int) -> dict[str, Split]:
    """Stratified train/val(/test) splits; the official test split is kept when there is one."""
    rng = np.random.default_rng(seed)
    if raw.test_images is None:
        tr, va, te = _stratified(raw.train_labels, [val_fraction, test_fraction], rng)
        arrays = {
            "train": (raw.train_images[tr], raw.train_labels[tr]),
            "val": (raw.train_images[va], raw.train_labels[va]),
            "test": (raw.train_images[te], raw.train_labels[te]),
        }
    else:
        tr, va = _stratified(raw.train_labels, [val_fraction], rng)
        arrays = {
            "train": (raw.train_images[tr], raw.train_labels[tr]),
            "val": (raw.train_images[va], raw.train_labels[va]),
            "test": (raw.test_images, raw.test_labels),
        }
    splits = {}
    for name, (x, y) in arrays.items():
        if len(x) == 0:
            raise GanModelError(f"data: split {name!r} is empty; check data.val_fraction/test_fraction")
        images = torch.from_numpy(np.ascontiguousarray(x))
        splits[name] = Split(images.unsqueeze(1) if images.ndim == 3 else images,  # [N, H, W]: greyscale
                             torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))
    return splits
