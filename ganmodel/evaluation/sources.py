"""Real images as the classifier and evaluate stages read them: a split held in memory (`Split`,
or its image tensor) or a reader that streams it in bounded batches (`ShardReader`), chosen by
`train.data_loading` (`open_splits`). The helpers here read either the same way, so code written
with them gives the same rows, in the same order, from both."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from ganmodel.data.prepared import SPLITS, Split, load_split, open_split
from ganmodel.data.shards import ShardReader, rebatch
from ganmodel.data.stream import resolve_loading

Images = torch.Tensor | ShardReader  # uint8 [N, C, H, W] in memory, or a split's reader


class HeldOut:
    """The val and test readers as one split (val's rows, then test's), as `heldout` concatenates
    two in-memory splits: same length, same row order, batches that cross from one to the other."""

    def __init__(self, val: ShardReader, test: ShardReader) -> None:
        if val.image_shape != test.image_shape:
            raise ValueError(f"held-out splits differ in shape: {val.image_shape} vs {test.image_shape}")
        self.parts, self.image_shape = (val, test), val.image_shape
        self.name = "held-out (val+test)"

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def iter_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of exactly `batch_size` rows (the last may be shorter), as slicing the
        concatenation would give: holds about one batch per part."""
        return rebatch((group for part in self.parts for group in part.iter_groups()), batch_size)

    def take(self, indices: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows at global `indices` (val's first), each from the part that holds it."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64)).reshape(-1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name}: indices must lie in [0, {len(self) - 1}]")
        images = torch.empty((idx.numel(), *self.image_shape), dtype=torch.uint8)
        labels = torch.empty(idx.numel(), dtype=torch.int64)
        start = 0
        for part in self.parts:
            hit = ((idx >= start) & (idx < start + len(part))).nonzero().flatten()
            if hit.numel():
                images[hit], labels[hit] = part.take(idx[hit] - start)
            start += len(part)
        return images, labels

    def labels(self) -> torch.Tensor:
        return torch.cat([p.labels() for p in self.parts])


Source = Split | ShardReader | HeldOut


def n_images(x: Images | Source) -> int:
    """Images of a tensor, split or reader."""
    if isinstance(x, Split):
        return int(x.images.shape[0])
    return int(x.shape[0]) if isinstance(x, torch.Tensor) else len(x)


def image_shape(x: Images | Source) -> tuple[int, int, int]:
    if isinstance(x, Split):
        return tuple(x.images.shape[1:])  # type: ignore[return-value]
    return tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else tuple(x.image_shape)  # type: ignore[return-value]


def images_of(split: Source) -> Images | HeldOut:
    """A split's images: the tensor of one in memory, the reader itself otherwise."""
    return split.images if isinstance(split, Split) else split


def images_at(x: Images | Source, index: torch.Tensor) -> torch.Tensor:
    """uint8 images at rows `index`, in its order: indexing in memory, `take` (reading only their
    row groups) from a reader."""
    if isinstance(x, Split):
        return x.images[index]
    return x[index] if isinstance(x, torch.Tensor) else x.take(index)[0]


def labels_of(split: Source) -> torch.Tensor:
    """All labels, int64 [N]: 8 bytes an image, read from the label column alone when streamed."""
    return split.labels if isinstance(split, Split) else split.labels()


def open_splits(prepared_dir: str | os.PathLike[str], data_loading: str,
                names: tuple[str, ...] = SPLITS) -> tuple[str, dict[str, Split | ShardReader]]:
    """(`memory` or `stream`, the splits `names`): loaded whole under `memory`, readers under
    `stream`. The rule is every stage's: `resolve_loading` on the train split's pixel bytes."""
    train = open_split(prepared_dir, "train")
    mode = resolve_loading(data_loading, train.nbytes)
    if mode == "memory":
        return mode, {s: load_split(prepared_dir, s) for s in names}
    return mode, {s: train if s == "train" else open_split(prepared_dir, s) for s in names}
