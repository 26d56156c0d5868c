"""Prepared data: stratified splits stored as Parquet shards per split (`ganmodel.data.shards`),
plus a content hash that downstream stages record so every model traces back to its exact data.

Images are uint8 [N, C, H, W]: C 1 (greyscale) or 3 (RGB), square. The built-in datasets are
[N, 1, 28, 28]; a folder dataset's shape is its `data.channels` and `data.resolution`, and
`meta.json` records it (`image_shape`), which the readers check.

`load_split` reads a whole split; `open_split` gives a reader that streams it in bounded batches
(what a stage uses when the split may not fit in memory)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ganmodel.data.shards import ShardReader, write_split
from ganmodel.errors import GanModelError

SPLITS = ("train", "val", "test")
META_FILE = "meta.json"


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W], H == W
    labels: torch.Tensor  # int64 [N]


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
    """Write each split as `<split>/part-*.parquet` and `meta.json` into an existing dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, s in splits.items():
        write_split(out, name, s.images, s.labels)
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(prepared_dir: str | os.PathLike[str]) -> dict:
    path = Path(prepared_dir) / META_FILE
    if not path.is_file():
        raise GanModelError(f"{path}: prepared-data metadata not found; run the prepare stage first")
    return json.loads(path.read_text())


def image_shape(meta: dict) -> tuple[int, int, int]:
    """[C, H, W] of the prepared images (meta.json's `image_shape`)."""
    return tuple(meta.get("image_shape", (1, 28, 28)))  # type: ignore[return-value]


def is_labelled(meta: dict) -> bool:
    """Whether the labels mean something: False for an unlabelled (flat) folder or a single class,
    where only unconditional training fits. The built-in datasets' meta predates the flag: True."""
    return bool(meta.get("labelled", True))


def _meta_shape(prepared_dir: Path) -> tuple[int, ...] | None:
    """meta.json's image_shape beside the splits, None where there is no readable meta.json."""
    try:
        return tuple(json.loads((prepared_dir / META_FILE).read_text())["image_shape"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_split(prepared_dir: str | os.PathLike[str], name: str) -> ShardReader:
    """A reader of one prepared split (length and shape known, no pixels read yet), its shape
    checked against meta.json's."""
    return ShardReader(prepared_dir, name, _meta_shape(Path(prepared_dir)))


def load_split(prepared_dir: str | os.PathLike[str], name: str) -> Split:
    """One prepared split, whole, in memory."""
    return Split(*open_split(prepared_dir, name).read())


def hash_prepared(prepared_dir: str | os.PathLike[str]) -> str:
    """`data_hash` recomputed from the shards, one row group at a time: what meta.json records,
    whatever the sharding."""
    h = hashlib.sha256()
    for name in SPLITS:
        reader = open_split(prepared_dir, name)
        n = len(reader)
        # As data_hash: images then labels, each after its header (so the split is read twice).
        for col, dtype, shape in ((0, torch.uint8, (n, *reader.image_shape)), (1, torch.int64, (n,))):
            h.update(f"{name}:{dtype}:{shape}".encode())
            for group in reader.iter_groups():
                h.update(group[col].tobytes())
    return h.hexdigest()


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]; equal to ToTensor() then Normalize([0.5], [0.5])."""
    return images.to(torch.float32, copy=True).div_(127.5).sub_(1.0)  # never in place on the input
