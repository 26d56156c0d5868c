"""Prepared data: stratified splits stored as one compact uint8 tensor file per split, plus a
content hash that downstream stages record so every model traces back to its exact data.

Images are uint8 [N, C, H, W]: C 1 (greyscale) or 3 (RGB), square. The built-in datasets are
[N, 1, 28, 28]; a folder dataset's shape is its `data.channels` and `data.resolution`, and
`meta.json` records it (`image_shape`), which `load_split` checks."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ganmodel.errors import GanModelError, brief

SPLITS = ("train", "val", "test")
META_FILE = "meta.json"


CHANNELS = (1, 3)


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


def image_shape(meta: dict) -> tuple[int, int, int]:
    """[C, H, W] of the prepared images (meta.json's `image_shape`)."""
    return tuple(meta.get("image_shape", (1, 28, 28)))  # type: ignore[return-value]


def is_labelled(meta: dict) -> bool:
    """Whether the labels mean something: False for an unlabelled (flat) folder or a single class,
    where only unconditional training fits. The built-in datasets' meta predates the flag: True."""
    return bool(meta.get("labelled", True))


def _meta_shape(prepared_dir: Path) -> tuple[int, ...] | None:
    """meta.json's image_shape beside a split file, None where there is no readable meta.json."""
    try:
        return tuple(json.loads((prepared_dir / META_FILE).read_text())["image_shape"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_split(prepared_dir: str | os.PathLike[str], name: str) -> Split:
    """Load one prepared split, checking dtype and shape (against meta.json's when it is there)."""
    path = Path(prepared_dir) / f"{name}.pt"
    if not path.is_file():
        raise GanModelError(f"{path}: prepared split not found; run the prepare stage first")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = obj["images"], obj["labels"]
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise GanModelError(f"{path}: not a prepared split file ({brief(err)})") from None
    if (images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in CHANNELS
            or images.shape[2] != images.shape[3]):
        raise GanModelError(f"{path}: expected uint8 images [N, C, H, W] with C 1 or 3 and H == W, "
                            f"got {images.dtype} {list(images.shape)}")
    expected = _meta_shape(Path(prepared_dir))
    if expected is not None and tuple(images.shape[1:]) != expected:
        raise GanModelError(f"{path}: images are {list(images.shape[1:])}, but {META_FILE} says image_shape "
                            f"{list(expected)}; run the prepare stage again")
    if labels.shape != (images.shape[0],):
        raise GanModelError(f"{path}: expected {images.shape[0]} labels, got {list(labels.shape)}")
    if labels.dtype != torch.int64:
        raise GanModelError(f"{path}: expected int64 labels, got {labels.dtype}")
    return Split(images, labels)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]; equal to ToTensor() then Normalize([0.5], [0.5])."""
    return images.to(torch.float32, copy=True).div_(127.5).sub_(1.0)  # never in place on the input
