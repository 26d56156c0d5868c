"""Where the training loop's batches come from: one small interface, three sources.

- `MemoryBatches`: the whole train split on this rank's device; the epoch order is a permutation
  drawn from the epoch's shared random stream and each rank slices the global batch. Fastest for
  data that fits, and bitwise deterministic (`train.data_loading: memory`). With per-image
  `weights` (`train.class_sampling`, `ganmodel.training.sampling`) the epoch is as many draws with
  replacement instead, from the same stream.
- `ShardBatches`: the prepared shards read without Ray (`data.stream.shuffled_batches`): every
  rank reads the same seeded global batches and takes its slice. Bounded memory, deterministic;
  what `train_local` and the DDP tests stream with.
- `ganmodel.training.ray_data.RayDataBatches`: this rank's shard of a Ray Data dataset (the train
  stage under Ray with `stream`).

The loop sees only `BatchSource`: it knows nothing of Ray, files or devices' memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

from ganmodel.data.shards import ShardReader
from ganmodel.data.stream import SHUFFLE_ROWS, shuffled_batches

# This rank's uint8 images [b, C, H, W] and int64 labels [b], on its device.
Batch = tuple[torch.Tensor, torch.Tensor]


class BatchSource(Protocol):
    """This rank's batches of the training split, epoch by epoch."""

    image_shape: tuple[int, int, int]
    labels: torch.Tensor  # all training labels [N] (8 bytes an image): the class prior G samples from

    def __len__(self) -> int:
        """Training images in the whole split (all ranks together)."""
        ...

    def epoch(self, epoch: int, gen: torch.Generator, n_steps: int) -> Iterator[Batch]:
        """`n_steps` batches of this rank's `batch_size / world_size` images. `gen` is the epoch's
        shared stream; a source that draws from it must do so before returning (the loop draws
        the noise from it next)."""
        ...


class MemoryBatches:
    """The split held on `device`; rank `rank` of `world_size` takes its slice of each global batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                 weights: torch.Tensor | None = None) -> None:
        if images.ndim != 4:
            raise ValueError(f"training images: expected shape [N, C, H, W], got {list(images.shape)}")
        self.image_shape = tuple(images.shape[1:])  # type: ignore[assignment]
        self.data = images.to(device, non_blocking=True)
        labels = labels if labels is not None else torch.zeros(images.shape[0], dtype=torch.long)
        self.labels = labels.to(device).long()
        if weights is not None and weights.shape != (images.shape[0],):
            raise ValueError(f"sampling weights: expected shape [{images.shape[0]}], "
                             f"got {list(weights.shape)}")
        self.weights = weights.to(device) if weights is not None else None
        self.batch_size = batch_size
        b_local = batch_size // world_size
        self.lo, self.hi = rank * b_local, (rank + 1) * b_local

    def __len__(self) -> int:
        return self.data.shape[0]

    def epoch(self, epoch: int, gen: torch.Generator, n_steps: int) -> Iterator[Batch]:
        # Drawn now, first from the epoch's stream: the order every earlier run used.
        n = self.data.shape[0]
        if self.weights is None:
            perm = torch.randperm(n, generator=gen, device=self.data.device)
        else:
            perm = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        return self._batches(perm, n_steps)

    def _batches(self, perm: torch.Tensor, n_steps: int) -> Iterator[Batch]:
        for i in range(n_steps):
            idx = perm[i * self.batch_size + self.lo : i * self.batch_size + self.hi]
            yield self.data[idx], self.labels[idx]


class ShardBatches:
    """The prepared split streamed from its shards, without Ray: seeded global batches in bounded
    memory (`shuffled_batches`), this rank's slice of each moved to `device`."""

    def __init__(self, reader: ShardReader, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu", shuffle_rows: int = SHUFFLE_ROWS) -> None:
        self.reader, self.batch_size, self.seed = reader, batch_size, seed
        self.image_shape = reader.image_shape
        self.labels = reader.labels()
        self.device = torch.device(device)
        self.shuffle_rows = shuffle_rows
        b_local = batch_size // world_size
        self.lo, self.hi = rank * b_local, (rank + 1) * b_local

    def __len__(self) -> int:
        return len(self.reader)

    def epoch(self, epoch: int, gen: torch.Generator, n_steps: int) -> Iterator[Batch]:
        batches = shuffled_batches(self.reader, self.batch_size, self.seed, epoch, self.shuffle_rows)
        for _, (x, y) in zip(range(n_steps), batches, strict=False):
            yield (x[self.lo : self.hi].to(self.device, non_blocking=True),
                   y[self.lo : self.hi].to(self.device, non_blocking=True))
