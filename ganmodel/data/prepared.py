"""Prepared data: stratified splits stored as one compact uint8 tensor file per split, plus a
content hash that downstream stages record so every model traces back to its exact data."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganmodel.data.sources import RawData
from ganmodel.errors import GanModelError, brief

SPLITS = ("train", "val", "test")
META_FILE = "meta.json"


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 [N, 1, 28, 28]
    labels: torch.Tensor  # int64 [N]


def _stratified(labels: np.ndarray, fractions: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Split indices per class by `fractions` (the remainder is the first part), then shuffle."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.cumsum([round(f * len(idx)) for f in fractions])
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
        splits[name] = Split(torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1),
                             torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))
    return splits


def data_hash(splits: dict[str, Split]) -> str:
    """sha256 over split names, shapes and bytes: identical data gives the identical hash."""
    h = hashlib.sha256()
    for name in SPLITS:
        s = splits[name]
        for t in (s.images, s.labels):
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def split_counts(splits: dict[str, Split], n_classes: int) -> dict[str, dict]:
    return {
        name: {
            "count": int(s.labels.numel()),
            "per_class": {str(c): int(n)
                          for c, n in enumerate(torch.bincount(s.labels, minlength=n_classes))},
        }
        for name, s in splits.items()
    }


def save_prepared(out_dir: str | os.PathLike[str], splits: dict[str, Split], meta: dict) -> None:
    """Write `<split>.pt` (state-dict-style tensors) and `meta.json` into an existing dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, s in splits.items():
        torch.save({"images": s.images, "labels": s.labels}, out / f"{name}.pt")
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(prepared_dir: str | os.PathLike[str]) -> dict:
    path = Path(prepared_dir) / META_FILE
    if not path.is_file():
        raise GanModelError(f"{path}: prepared-data metadata not found; run the prepare stage first")
    return json.loads(path.read_text())


def load_split(prepared_dir: str | os.PathLike[str], name: str) -> Split:
    """Load one prepared split, checking dtype and shape."""
    path = Path(prepared_dir) / f"{name}.pt"
    if not path.is_file():
        raise GanModelError(f"{path}: prepared split not found; run the prepare stage first")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = obj["images"], obj["labels"]
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise GanModelError(f"{path}: not a prepared split file ({brief(err)})") from None
    if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise GanModelError(
            f"{path}: expected uint8 images [N, 1, 28, 28], got {images.dtype} {list(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise GanModelError(f"{path}: expected {images.shape[0]} labels, got {list(labels.shape)}")
    if labels.dtype != torch.int64:
        raise GanModelError(f"{path}: expected int64 labels, got {labels.dtype}")
    return Split(images, labels)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]; equal to ToTensor() then Normalize([0.5], [0.5])."""
    return images.to(torch.float32, copy=True).div_(127.5).sub_(1.0)  # never in place on the input
