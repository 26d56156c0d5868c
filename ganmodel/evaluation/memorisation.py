"""Memorisation: is the generator closer to its training images than unseen real images are?

A generator that reproduces training images can score a better FID than real data itself (the
reference set is the train split), and a registered model that emits training images leaks them.
Two figures, both in the evaluation feature space and both against the train split T:

- `data_copying`: the C_T statistic of Meehan, Chaudhuri & Dasgupta 2020, "A Non-Parametric Test
  to Detect Data-Copying in Generative Models" (sec. 3). T is partitioned into cells by k-means;
  in each cell, the distances to the nearest training image of held-out real images (P) and of
  generated images (Q) are compared by a Mann-Whitney U test, Z-scored (eq. 2); C_T is the
  average of the cells' Z, weighted by P's share of each cell, over the cells Q visits often
  enough (eq. 3). About 0 when Q is as far from T as unseen real data; strongly negative when Q
  copies T (a copy is at distance 0); positive when Q is farther (underfitting).
- `train_distance_ratio`: median nearest-train distance of Q over that of P; < 1 is closer to
  the training images than unseen real images are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

DEFAULT_CHUNK = 1024
MIN_PER_CELL = 10  # Q and P samples a cell needs for its U test to count (Meehan et al.'s tau)
KMEANS_ITERS = 30


def cells_for(n: int) -> int:
    """k-means cells for samples of size `n`: about 100 samples per cell, 2 to 50 cells."""
    return max(2, min(50, n // 100))


def nearest_distances(x: torch.Tensor, ref: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Euclidean distance from each row of `x` [n, D] to its nearest row of `ref` [m, D]; float64 [n]."""
    if x.ndim != 2 or ref.ndim != 2 or x.shape[1] != ref.shape[1]:
        raise ValueError(f"expected [n, D] and [m, D] features, got {list(x.shape)} and {list(ref.shape)}")
    x, ref = x.double(), ref.double()
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for lo in range(0, x.shape[0], chunk):
        # The direct form, not the matmul one: a copy must come out at exactly 0, not at 1e-7.
        out[lo : lo + chunk] = torch.cdist(x[lo : lo + chunk], ref,
                                           compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    return out


def mann_whitney_z(q: torch.Tensor, p: torch.Tensor) -> float:
    """The Z-scored Mann-Whitney U of sample `q` against `p` (ties count half, with the tie
    correction of the variance): negative when q's values tend to be smaller than p's."""
    m, n = q.numel(), p.numel()
    if m == 0 or n == 0:
        raise ValueError(f"Mann-Whitney U needs two non-empty samples, got {m} and {n}")
    ps = p.double().sort().values
    below = torch.searchsorted(ps, q.double(), right=False)
    at_or_below = torch.searchsorted(ps, q.double(), right=True)
    u = float((below + at_or_below).double().sum() / 2)  # pairs (q_i, p_j) with q_i > p_j, ties 1/2
    _, counts = torch.cat([q.double(), p.double()]).unique(return_counts=True)
    ties = float((counts.double() ** 3 - counts.double()).sum())
    total = m + n
    var = m * n / 12.0 * ((total + 1) - ties / (total * (total - 1)))
    if var <= 0:  # every value equal: no evidence either way
        return 0.0
    return (u - m * n / 2.0) / math.sqrt(var)


def kmeans(x: torch.Tensor, k: int, seed: int, iters: int = KMEANS_ITERS) -> torch.Tensor:
    """Centroids [k, D] of `x` by Lloyd's algorithm from a seeded greedy k-means++ start (Arthur &
    Vassilvitskii 2007; each new centre is the best of 2 + log k candidates drawn proportionally
    to D^2, as in scikit-learn); deterministic for a seed."""
    x = x.double()
    if k < 1 or k > x.shape[0]:
        raise ValueError(f"k-means: k={k} cells for {x.shape[0]} points")
    gen = torch.Generator().manual_seed(seed)
    trials = 2 + int(math.log(k))
    first = x[torch.randint(x.shape[0], (1,), generator=gen)]
    centres = [first.squeeze(0)]
    d2 = torch.cdist(x, first).squeeze(1) ** 2
    for _ in range(1, k):
        weights = d2 if float(d2.sum()) > 0 else torch.ones_like(d2)
        cand = x[torch.multinomial(weights, trials, replacement=True, generator=gen)]
        pots = torch.minimum(d2[None, :], torch.cdist(cand, x) ** 2)  # [trials, n]
        best = int(pots.sum(dim=1).argmin())
        centres.append(cand[best])
        d2 = pots[best]
    c = torch.stack(centres)
    for _ in range(iters):
        cell = assign(x, c)
        new = c.clone()
        for j in range(k):
            members = x[cell == j]
            if members.shape[0]:
                new[j] = members.mean(dim=0)
        if torch.equal(new, c):
            break
        c = new
    return c


def assign(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """The nearest centre of each row of `x`; int64 [n]."""
    return torch.cdist(x.double(), centres.double()).argmin(dim=1)


class Cells(Protocol):
    """The training set's k-means cells and each sample's distance to its nearest training image:
    `TrainCells` in memory, or `ganmodel.evaluation.reference.StreamedCells` over streamed features."""

    centres: torch.Tensor  # float64 [k, D]

    def nearest(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class TrainCells:
    """The training set's features and their k-means cells: computed once per evaluation, shared
    by the generator's test and the floor's."""

    train: torch.Tensor  # float64 [n_train, D]
    centres: torch.Tensor  # float64 [k, D]

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Distance from each row of `x` to its nearest training feature."""
        return nearest_distances(x, self.train)


def train_cells(train_feats: torch.Tensor, n: int, seed: int) -> TrainCells:
    """Cells for evaluating samples of size `n` (`cells_for(n)` k-means cells of the train features)."""
    k = min(cells_for(n), train_feats.shape[0])
    return TrainCells(train_feats.double(), kmeans(train_feats, k, seed))


def data_copying(cells: Cells, test: torch.Tensor, gen: torch.Tensor,
                 min_per_cell: int = MIN_PER_CELL) -> dict[str, float]:
    """C_T of generated features `gen` (Q) against held-out real features `test` (P), and the
    median nearest-train distance ratio (see the module docstring).

    Cells that Q or P visit fewer than `min_per_cell` times are left out (a dropped mode is what
    recall and coverage measure); if no cell qualifies, the test runs on all samples as one cell.
    Returns data_copying, train_distance_ratio and copying_cells (cells used)."""
    l_p = cells.nearest(test)
    l_q = cells.nearest(gen)
    c_p, c_q = assign(test, cells.centres), assign(gen, cells.centres)
    z_sum = w_sum = 0.0
    used = 0
    for j in range(cells.centres.shape[0]):
        in_p, in_q = c_p == j, c_q == j
        if int(in_p.sum()) < min_per_cell or int(in_q.sum()) < min_per_cell:
            continue
        weight = float(in_p.double().mean())  # P's share of the cell (eq. 3)
        z_sum += weight * mann_whitney_z(l_q[in_q], l_p[in_p])
        w_sum += weight
        used += 1
    ct = z_sum / w_sum if used else mann_whitney_z(l_q, l_p)
    median_p = float(l_p.median())
    ratio = float(l_q.median()) / median_p if median_p > 0 else float("inf")
    return {"data_copying": ct, "train_distance_ratio": ratio, "copying_cells": float(used)}
