"""Precision/recall and density/coverage on k-nearest-neighbour balls in feature space.

- Precision and recall: Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models". Precision: the fraction of fake samples inside the union of real
  k-NN balls; recall: the fraction of real samples inside the union of fake k-NN balls.
- Density and coverage: Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
  Generative Models". Density: how many real balls contain a fake sample, / k, averaged over
  fakes (about 1 when the distributions match); coverage: the fraction of real balls that
  contain at least one fake.

The definitions follow the authors' reference code (clovaai/prdc 0.2) exactly: the radius of a
sample is the distance to its k-th nearest neighbour other than itself, and "inside" is a strict
`<`. Distances are float64 and computed in row chunks, so 10k x 10k needs tens of MB, not GBs.
"""

from __future__ import annotations

import torch

from ganmodel.errors import GanModelError

DEFAULT_CHUNK = 1024


def _check(x: torch.Tensor, what: str, k: int) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a [N, D] matrix, got shape {list(x.shape)}")
    if x.shape[0] <= k:
        raise GanModelError(f"{what}: k-NN radii with k={k} need more than {k} samples, got {x.shape[0]}")
    return x.detach().to(torch.float64)


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # The matmul form (|a|^2 + |b|^2 - 2ab) is exact enough in float64 and far faster than
    # the direct form; distances only feed comparisons and k-th values.
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")


def knn_radii(x: torch.Tensor, k: int, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Distance from each row of `x` [N, D] to its k-th nearest other row; float64 [N]."""
    x = _check(x, "features", k)
    radii = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for lo in range(0, x.shape[0], chunk):
        d = _cdist(x[lo : lo + chunk], x)
        rows = torch.arange(d.shape[0], device=x.device)
        d[rows, rows + lo] = float("inf")  # a sample is not its own neighbour
        # topk then the last column: the same value as kthvalue, several times faster on CPU.
        radii[lo : lo + chunk] = d.topk(k, dim=1, largest=False).values[:, -1]
    return radii


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` [M, D] against `real` [N, D], k-NN balls.

    Computed on the inputs' device; pass CPU tensors for the CPU. Returns floats under the keys
    precision, recall, density, coverage.
    """
    real, fake = _check(real, "real features", k), _check(fake, "fake features", k)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]}, fake {fake.shape[1]}")
    fake = fake.to(real.device)
    r_real, r_fake = knn_radii(real, k, chunk), knn_radii(fake, k, chunk)
    in_real_balls = torch.zeros(fake.shape[0], dtype=torch.int64, device=real.device)  # per fake
    real_recalled = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    real_covered = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for lo in range(0, real.shape[0], chunk):
        d = _cdist(real[lo : lo + chunk], fake)  # [c, M]
        inside = d < r_real[lo : lo + chunk, None]  # fake j inside real ball i
        in_real_balls += inside.sum(dim=0)
        real_covered[lo : lo + chunk] = inside.any(dim=1)
        real_recalled[lo : lo + chunk] = (d < r_fake[None, :]).any(dim=1)
    return {
        "precision": float((in_real_balls > 0).double().mean()),
        "recall": float(real_recalled.double().mean()),
        "density": float(in_real_balls.double().mean() / k),
        "coverage": float(real_covered.double().mean()),
    }


def nearest_neighbours(fake: torch.Tensor, real: torch.Tensor, k: int = 1,
                       chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Indices [M, k] (int64) of the k nearest `real` rows to each `fake` row, nearest first.

    For a nearest-neighbour sheet: a generated image beside its closest training images shows
    whether the generator copies its data.
    """
    fake, real = _check(fake, "fake features", 0), _check(real, "real features", k - 1)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]}, fake {fake.shape[1]}")
    real = real.to(fake.device)
    out = torch.empty(fake.shape[0], k, dtype=torch.int64, device=fake.device)
    for lo in range(0, fake.shape[0], chunk):
        out[lo : lo + chunk] = _cdist(fake[lo : lo + chunk], real).topk(k, dim=1, largest=False).indices
    return out
