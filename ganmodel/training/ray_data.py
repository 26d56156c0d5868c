"""Streaming the train split with Ray Data (`train.data_loading: stream`): Ray Train's own answer
to data that outgrows a worker. The driver builds one `ray.data.Dataset` over the prepared Parquet
shards and hands it to the `TorchTrainer` (`datasets=`); Ray splits it across the workers
(`streaming_split(equal=True)`: disjoint rows, the same number on every rank), reads blocks on
any node from shared storage and prefetches them while the model computes. Each worker reads its
shard through `RayDataBatches`, the loop's `BatchSource`.

What holds under `stream` (tests/test_stream_train.py, tests/test_cluster.py):
- In every epoch each training example is read by exactly one rank, once, except the remainder
  of an equal split and of `drop_last` (fewer than `world_size * (1 + batch_size / world_size)`).
- Every rank takes the same number of steps (`steps_per_epoch` of the global count).
- The order is random per epoch: shard files are shuffled (seeded by `train.seed` and the epoch's
  execution), rows within a window of `SHUFFLE_BATCHES` batches per rank (seeded by seed, epoch
  and rank).
  Which rows reach which rank depends on the order reads finish, so unlike `memory` a stream run
  is not bitwise reproducible; noise and augmentation still come from the (seed, epoch) stream.
- A resumed run continues from its last epoch checkpoint and re-reads that epoch from its start:
  no example is seen twice within an epoch, and none is skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ganmodel.data.shards import IMAGE, LABEL, ShardReader, image_array, shard_files
from ganmodel.data.stream import epoch_seed
from ganmodel.training.batches import Batch

DATASET = "train"  # the name workers ask `ray.train.get_dataset_shard` for
PREFETCH_BATCHES = 4
# Rows shuffle within a window of this many batches per rank, after the shard files are shuffled:
# memory per worker stays a few batches (12 MB at 64 px and batch 64), whatever the data.
SHUFFLE_BATCHES = 16


def _decode(batch, shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """A pyarrow batch of shard rows -> uint8 images [n, C, H, W] and int64 labels (zero-copy view
    of the fixed-size binary column)."""
    return {IMAGE: image_array(batch.column(IMAGE), shape),
            LABEL: batch.column(LABEL).to_numpy().astype(np.int64, copy=False)}


def train_dataset(prepared_dir: str, seed: int, split: str = DATASET) -> Any:
    """Split `split` (the train split) as a lazily read `ray.data.Dataset` of {image, label} rows."""
    import ray.data
    from ray.data import FileShuffleConfig

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # one bar per operator per epoch, redrawn every second
    ctx.print_on_execution_start = False
    reader = ShardReader(prepared_dir, split)
    files = [str(f.absolute()) for f in shard_files(prepared_dir, split)]
    # Its tasks need a CPU the workers do not hold (`cluster.DATA_CPUS`): Ray Data does not start a
    # read, not even the file listing, without one (measured: it waits forever, even at num_cpus=0).
    ds = ray.data.read_parquet(files, columns=[IMAGE, LABEL], shuffle=FileShuffleConfig(seed=seed))
    return ds.map_batches(functools.partial(_decode, shape=reader.image_shape), batch_format="pyarrow",
                          zero_copy_batch=True)


class RayDataBatches:
    """This rank's shard of the Ray Data train dataset as the loop's `BatchSource`."""

    def __init__(self, shard: Any, n_images: int, image_shape: tuple[int, int, int], labels: torch.Tensor,
                 batch_size: int, seed: int, rank: int, world_size: int, device: torch.device) -> None:
        self.shard, self.n_images = shard, n_images
        self.image_shape, self.labels = tuple(image_shape), labels
        self.b_local = batch_size // world_size
        self.seed, self.rank, self.world_size, self.device = seed, rank, world_size, device

    def __len__(self) -> int:
        return self.n_images

    def epoch(self, epoch: int, gen: torch.Generator, n_steps: int) -> Iterator[Batch]:
        it = self.shard.iter_torch_batches(
            batch_size=self.b_local, drop_last=True, prefetch_batches=PREFETCH_BATCHES, device=self.device,
            local_shuffle_buffer_size=SHUFFLE_BATCHES * self.b_local,
            local_shuffle_seed=epoch_seed(self.seed, epoch) * 1009 + self.rank)
        return (( b[IMAGE], b[LABEL]) for _, b in zip(range(n_steps), it, strict=False))
