"""The evaluate protocol's real splits, featurised: the train split (reference set A, the
memorisation cells, the nearest-neighbour sheet) and the held-out split (set B, the CAS test set).

In memory (`MemoryReal`, `MemoryTrain`) a split is featurised whole, as the protocol always did,
and every figure comes from the very calls it always came from. Streamed (`StreamedReal`,
`StreamedTrain`) a split is read once, in batches of `REAL_BATCH`: the batches `extract` makes of
the whole tensor, so every feature is bit-identical. Only the N rows of the protocol's subset keep
their features in memory; the train split's features go to an anonymous temporary file in
$TMPDIR (`FeatureFile`), read back in chunks by the memorisation test (k-means cells,
nearest-train distances) and the sheet's nearest neighbours, with running minima and sums.
Figures agree with the in-memory ones up to float summation order (k-means sums chunk by chunk).

What stays O(N) when streamed: the train features on disk (N x D float64, 8 D bytes an image);
in memory, scalars per train image only: the seeded permutation that draws a subset (`pick`, as
in memory) and the k-means++ seeding's squared distances [N] (`torch.multinomial` draws from all
of them at once, and so the cells match the in-memory ones).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ganmodel.data.prepared import Split
from ganmodel.data.shards import ShardReader
from ganmodel.evaluation.features import extract
from ganmodel.evaluation.memorisation import (
    DEFAULT_CHUNK,
    KMEANS_ITERS,
    TrainCells,
    assign,
    cells_for,
    train_cells,
)
from ganmodel.evaluation.metrics import RealSubset, pick, real_subset
from ganmodel.evaluation.prdc import nearest_neighbours
from ganmodel.evaluation.realstats import REAL_BATCH, compute_stats
from ganmodel.evaluation.sources import HeldOut

FEATURE_CHUNK = 4096  # train features read back at once: 4 MiB at D = 128


class MemoryReal:
    """A split held in memory, featurised whole (`compute_stats`)."""

    def __init__(self, classifier: nn.Module, split: Split) -> None:
        self.split = split
        self.stats = compute_stats(classifier, split.images, split.labels)

    @property
    def test_set(self) -> Split:
        return self.split

    def subset(self, n: int, seed: int, what: str) -> RealSubset:
        return real_subset(self.stats, n, seed, what)

    def images(self, index: torch.Tensor) -> torch.Tensor:
        return self.split.images[index]

    def close(self) -> None:
        pass


class MemoryTrain(MemoryReal):
    """The train split in memory: cells and neighbours from its whole feature matrix."""

    def cells(self, n: int, seed: int) -> TrainCells:
        return train_cells(self.stats.features, n, seed)

    def neighbours(self, feats: torch.Tensor, k: int) -> torch.Tensor:
        return nearest_neighbours(feats, self.stats.features, k=k)


class StreamedReal:
    """A split read in batches; the features of the subset's rows are all it keeps."""

    def __init__(self, classifier: nn.Module, reader: ShardReader | HeldOut) -> None:
        self.classifier, self.reader = classifier, reader
        self.n = len(reader)

    @property
    def test_set(self) -> ShardReader | HeldOut:
        return self.reader

    def subset(self, n: int, seed: int, what: str) -> RealSubset:
        return self._featurise(pick(self.n, n, seed, what))

    def _featurise(self, index: torch.Tensor,
                   sink: Callable[[torch.Tensor], None] | None = None) -> RealSubset:
        """One pass: features, logits and labels of rows `index` (in its order); every batch's
        features also go to `sink` when given."""
        order = torch.argsort(index)
        rows = index[order]
        c = self.classifier
        feats = torch.empty(index.numel(), c.feature_dim, dtype=torch.float64)
        logits = torch.empty(index.numel(), c.n_classes, dtype=torch.float64)
        labels = torch.empty(index.numel(), dtype=torch.int64)
        lo = 0
        for x, y in self.reader.iter_batches(REAL_BATCH):
            f, lg = extract(c, x, REAL_BATCH)
            a, b = (int(torch.searchsorted(rows, v)) for v in (lo, lo + len(x)))
            at, local = order[a:b], rows[a:b] - lo
            feats[at], logits[at], labels[at] = f[local], lg[local], y[local]
            if sink is not None:
                sink(f)
            lo += len(x)
        return RealSubset(index, feats, logits, labels)

    def images(self, index: torch.Tensor) -> torch.Tensor:
        return self.reader.take(index)[0]

    def close(self) -> None:
        pass


class FeatureFile:
    """float64 feature rows [N, D] appended, in order, to an anonymous temporary file (gone when
    closed), and read back in chunks of `chunk_rows` or by row: features off the heap."""

    def __init__(self, dim: int, chunk_rows: int | None = None) -> None:
        self.dim, self.chunk_rows, self.n = dim, chunk_rows or FEATURE_CHUNK, 0
        # Closed by `close` (evaluate's finally), not a with-block: it outlives this call.
        self._file = tempfile.TemporaryFile(prefix="ganmodel-features-")  # noqa: SIM115

    def append(self, feats: torch.Tensor) -> None:
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"features: expected [n, {self.dim}], got {list(feats.shape)}")
        self._file.seek(0, 2)
        self._file.write(feats.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
        self.n += feats.shape[0]

    def _read(self, start: int, rows: int) -> torch.Tensor:
        buf = bytearray(rows * self.dim * 8)  # writable, so torch shares it without a copy
        self._file.seek(start * self.dim * 8)
        if self._file.readinto(buf) != len(buf):
            raise RuntimeError("feature file: shorter than the rows written")
        return torch.from_numpy(np.frombuffer(buf, dtype=np.float64).reshape(rows, self.dim))

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, features [<= chunk_rows, D]) over all rows, in order."""
        for lo in range(0, self.n, self.chunk_rows):
            yield lo, self._read(lo, min(self.chunk_rows, self.n - lo))

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Features [len(index), D] of rows `index` (a few: k-means++ candidates)."""
        return torch.cat([self._read(int(i), 1) for i in index.reshape(-1)])

    def close(self) -> None:
        self._file.close()


def streamed_nearest_distances(x: torch.Tensor, ref: FeatureFile, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """`memorisation.nearest_distances(x, ref)` as a running minimum over `ref`'s chunks: the
    direct distance form is exact per pair, so the result is identical."""
    if x.ndim != 2 or x.shape[1] != ref.dim:
        raise ValueError(f"expected [n, {ref.dim}] features, got {list(x.shape)}")
    x = x.double()
    out = torch.full((x.shape[0],), math.inf, dtype=torch.float64)
    for _, r in ref.chunks():
        for lo in range(0, x.shape[0], chunk):
            d = torch.cdist(x[lo : lo + chunk], r, compute_mode="donot_use_mm_for_euclid_dist")
            torch.minimum(out[lo : lo + chunk], d.min(dim=1).values, out=out[lo : lo + chunk])
    return out


def streamed_neighbours(x: torch.Tensor, ref: FeatureFile, k: int) -> torch.Tensor:
    """`prdc.nearest_neighbours(x, ref, k)`: indices [M, k], nearest first, by a running top-k
    over `ref`'s chunks (ties may be ordered differently)."""
    if ref.n < k:
        raise ValueError(f"nearest neighbours: k={k} of {ref.n} reference rows")
    x = x.detach().double()
    best = torch.empty(x.shape[0], 0, dtype=torch.float64)
    index = torch.empty(x.shape[0], 0, dtype=torch.int64)
    for lo, r in ref.chunks():
        # The matmul form, as prdc's: these distances only rank the neighbours.
        d = torch.cat([best, torch.cdist(x, r, compute_mode="use_mm_for_euclid_dist")], dim=1)
        ids = torch.cat([index, torch.arange(lo, lo + r.shape[0]).expand(x.shape[0], -1)], dim=1)
        top = d.topk(min(k, d.shape[1]), dim=1, largest=False)
        best, index = top.values, ids.gather(1, top.indices)
    return index


def kmeans_streamed(x: FeatureFile, k: int, seed: int, iters: int = KMEANS_ITERS) -> torch.Tensor:
    """`memorisation.kmeans` of features on file: the same seeded draws and steps, each sum over
    all points taken chunk by chunk. 2k passes to seed and one per Lloyd step, the passes the
    in-memory k-means makes over the matrix it holds."""
    n = x.n
    if k < 1 or k > n:
        raise ValueError(f"k-means: k={k} cells for {n} points")
    gen = torch.Generator().manual_seed(seed)
    trials = 2 + int(math.log(k))
    first = x.rows(torch.randint(n, (1,), generator=gen))
    centres = [first.squeeze(0)]
    d2 = torch.empty(n, dtype=torch.float64)  # O(N): multinomial draws from all of it at once
    for lo, part in x.chunks():
        d2[lo : lo + part.shape[0]] = torch.cdist(part, first).squeeze(1) ** 2
    for _ in range(1, k):
        weights = d2 if float(d2.sum()) > 0 else torch.ones_like(d2)
        cand = x.rows(torch.multinomial(weights, trials, replacement=True, generator=gen))
        pots = torch.zeros(trials, dtype=torch.float64)
        for lo, part in x.chunks():
            pots += torch.minimum(d2[None, lo : lo + part.shape[0]], torch.cdist(cand, part) ** 2).sum(dim=1)
        best = int(pots.argmin())
        centres.append(cand[best])
        for lo, part in x.chunks():  # the chosen candidate's row of the very same distances
            d = d2[lo : lo + part.shape[0]]
            torch.minimum(d, (torch.cdist(cand, part) ** 2)[best], out=d)
    c = torch.stack(centres)
    for _ in range(iters):
        sums = torch.zeros_like(c)
        counts = torch.zeros(k, dtype=torch.int64)
        for _, part in x.chunks():
            cell = assign(part, c)
            sums.index_add_(0, cell, part)
            counts += torch.bincount(cell, minlength=k)
        new = c.clone()
        full = counts > 0
        new[full] = sums[full] / counts[full, None]
        if torch.equal(new, c):
            break
        c = new
    return c


class StreamedTrain(StreamedReal):
    """The train split streamed: `subset` (called first) also writes every feature to a
    `FeatureFile`, which `cells` and `neighbours` read back in chunks."""

    def __init__(self, classifier: nn.Module, reader: ShardReader) -> None:
        super().__init__(classifier, reader)
        self.features: FeatureFile | None = None

    def subset(self, n: int, seed: int, what: str) -> RealSubset:
        index = pick(self.n, n, seed, what)
        self.close()
        self.features = FeatureFile(self.classifier.feature_dim)
        return self._featurise(index, sink=self.features.append)

    def _file(self) -> FeatureFile:
        if self.features is None:
            raise RuntimeError("StreamedTrain: call subset() first; it featurises the split")
        return self.features

    def cells(self, n: int, seed: int) -> StreamedCells:
        """`train_cells` of the streamed features."""
        f = self._file()
        return StreamedCells(f, kmeans_streamed(f, min(cells_for(n), f.n), seed))

    def neighbours(self, feats: torch.Tensor, k: int) -> torch.Tensor:
        return streamed_neighbours(feats, self._file(), k)

    def close(self) -> None:
        if self.features is not None:
            self.features.close()
            self.features = None


@dataclass(frozen=True)
class StreamedCells:
    """`TrainCells` of a streamed train split (a `memorisation.Cells`)."""

    train: FeatureFile
    centres: torch.Tensor  # float64 [k, D]

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        return streamed_nearest_distances(x, self.train)


def real_split(classifier: nn.Module, split: Split | ShardReader | HeldOut) -> MemoryReal | StreamedReal:
    """A held-out split as the protocol reads it: whole when in memory, else streamed."""
    return MemoryReal(classifier, split) if isinstance(split, Split) else StreamedReal(classifier, split)


def train_reference(classifier: nn.Module, split: Split | ShardReader) -> MemoryTrain | StreamedTrain:
    """The train split as the protocol reads it: whole when in memory, else streamed."""
    return MemoryTrain(classifier, split) if isinstance(split, Split) else StreamedTrain(classifier, split)
