"""Ray-free streaming of a prepared split: seeded, shuffled epochs in bounded memory, and the rule
that decides between holding a split in memory and streaming it.

`shuffled_batches` is what `train_local`, the DDP tests and the classifier stage stream with; under
Ray the train stage streams with Ray Data instead (`ganmodel.training.ray_data`). Both read the
same shards (`ganmodel.data.shards`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ganmodel.data.shards import ShardReader

LOADINGS = ("memory", "stream", "auto")
# auto streams a split whose pixels exceed this: below it, holding the split (once per worker,
# on its device) is the fastest design; above it, memory per worker would grow with the data.
# Measured with benchmarks/memory.py (docs/data.md).
AUTO_STREAM_BYTES = 1 << 30
# Rows a streaming reader shuffles together (at least one global batch): the bound on what it holds.
SHUFFLE_ROWS = 8192


def resolve_loading(mode: str, nbytes: int) -> str:
    """`memory` or `stream` for `train.data_loading` `mode` and a split of `nbytes` pixel bytes."""
    if mode not in LOADINGS:
        raise ValueError(f"data loading must be one of {LOADINGS}, got {mode!r}")
    if mode != "auto":
        return mode
    return "stream" if nbytes > AUTO_STREAM_BYTES else "memory"


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def shuffled_batches(reader: ShardReader, batch_size: int, seed: int, epoch: int,
                     shuffle_rows: int = SHUFFLE_ROWS, drop_last: bool = True
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of `reader`'s split as (uint8 images [batch_size, C, H, W], int64 labels) batches.

    Row groups are read in an order drawn from (seed, epoch); rows are shuffled in windows of at
    least `shuffle_rows` rows. Every row is yielded exactly once per epoch, except the last
    `len(reader) % batch_size` with `drop_last`. Deterministic: the same (seed, epoch) gives the same
    batches, so every rank of a DDP job sees the same global batches (and takes its slice), and a
    resumed run replays the epoch it restarts from. Holds about `shuffle_rows + batch_size` rows."""
    rng = np.random.default_rng(epoch_seed(seed, epoch))
    groups = reader.groups()
    order = [groups[i] for i in rng.permutation(len(groups))]
    window = max(shuffle_rows, batch_size)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0

    def flush(final: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        nonlocal xs, ys, have
        x, y = np.concatenate(xs), np.concatenate(ys)
        perm = rng.permutation(len(x))
        x, y = x[perm], y[perm]
        full = len(x) // batch_size * batch_size
        for i in range(0, full, batch_size):
            yield torch.from_numpy(x[i : i + batch_size]), torch.from_numpy(y[i : i + batch_size])
        rest = slice(full, len(x))
        if final and not drop_last and full < len(x):
            yield torch.from_numpy(x[rest]), torch.from_numpy(y[rest])
        xs, ys, have = [x[rest]], [y[rest]], len(x) - full

    for x, y in reader.iter_groups(order):
        xs.append(x)
        ys.append(y)
        have += len(x)
        if have >= window:
            yield from flush(final=False)
    if have:
        yield from flush(final=True)
