"""The memorisation figure (Meehan et al. 2020's data-copying test) on features with known answers:
its U test against scipy, k-means cells, and the sign of C_T for copies, fresh samples and
samples farther from the training set than real data."""

from __future__ import annotations

import pytest
import scipy.stats
import torch

from ganmodel.evaluation.memorisation import (
    assign,
    data_copying,
    kmeans,
    mann_whitney_z,
    nearest_distances,
    train_cells,
)


def _blobs(n: int, seed: int, centres: torch.Tensor, spread: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(centres.shape[0], (n,), generator=g)
    return centres[which] + spread * torch.randn(n, centres.shape[1], generator=g, dtype=torch.float64)


CENTRES = 8.0 * torch.randn(6, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("ties", [False, True])
def test_mann_whitney_z_matches_scipy(ties: bool):
    g = torch.Generator().manual_seed(1)
    q, p = torch.randn(70, generator=g) - 0.3, torch.randn(90, generator=g)
    if ties:
        q, p = q.round(decimals=1), p.round(decimals=1)
        q[:20] = 0.0  # a block of exact ties, as copies at distance 0 are
    want = scipy.stats.mannwhitneyu(q.numpy(), p.numpy(), alternative="less", method="asymptotic",
                                    use_continuity=False).pvalue
    assert scipy.stats.norm.cdf(mann_whitney_z(q, p)) == pytest.approx(want, rel=1e-6)


def test_kmeans_is_seeded_and_finds_separated_clusters():
    x = _blobs(600, 2, CENTRES, spread=0.5)
    a, b = kmeans(x, 6, seed=3), kmeans(x, 6, seed=3)
    assert torch.equal(a, b)
    # Each true blob lands in one cell.
    truth = assign(x, CENTRES)
    cells = assign(x, a)
    assert all(len(set(cells[truth == j].tolist())) == 1 for j in range(6))


def test_nearest_distances_are_exactly_zero_for_copies():
    train = _blobs(300, 4, CENTRES)
    d = nearest_distances(train[:50], train)
    assert torch.equal(d, torch.zeros(50, dtype=torch.float64))
    assert (nearest_distances(_blobs(50, 5, CENTRES), train) > 0).all()


def test_c_t_is_zero_for_fresh_samples_negative_for_copies_positive_for_far_ones():
    train, test = _blobs(2000, 10, CENTRES), _blobs(600, 11, CENTRES)
    cells = train_cells(train, 600, seed=0)
    fresh = data_copying(cells, test, _blobs(600, 12, CENTRES))
    assert abs(fresh["data_copying"]) < 3 and fresh["train_distance_ratio"] == pytest.approx(1, abs=0.15)
    assert fresh["copying_cells"] == 6
    copies = data_copying(cells, test, train[:600])
    assert copies["data_copying"] < -10 and copies["train_distance_ratio"] == 0.0
    # Half copies, half fresh: still clearly flagged.
    mixed = data_copying(cells, test, torch.cat([train[:300], _blobs(300, 13, CENTRES)]))
    assert mixed["data_copying"] < -5
    far = data_copying(cells, test, _blobs(600, 14, CENTRES, spread=1.5))
    assert far["data_copying"] > 5 and far["train_distance_ratio"] > 1.2


def test_c_t_skips_cells_the_generator_does_not_visit():
    """A dropped mode is recall's business: C_T is computed over the cells both samples visit."""
    train, test = _blobs(2000, 20, CENTRES), _blobs(600, 21, CENTRES)
    cells = train_cells(train, 600, seed=0)
    one_mode = _blobs(600, 22, CENTRES[:1])
    out = data_copying(cells, test, one_mode)
    assert out["copying_cells"] == 1 and abs(out["data_copying"]) < 3
