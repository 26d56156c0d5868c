"""FID, KID and IS on precomputed classifier features, computed by torchmetrics.

torchmetrics' metrics take a feature-extractor module; here it is the identity on feature vectors
(`Precomputed`), so the library does the statistics (float64 moments, the eigenvalue form of
the FID matrix square root, the unbiased MMD estimator) on our float64 features.
- FID: Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
  Nash Equilibrium".
- KID: Binkowski et al. 2018, "Demystifying MMD GANs" (cubic polynomial kernel, subsets).
- IS: Salimans et al. 2016, "Improved Techniques for Training GANs" (exp E[KL(p(y|x) || p(y))]).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ganmodel.errors import GanModelError

if TYPE_CHECKING:  # torchmetrics takes seconds to import: only the functions that use it do
    from torchmetrics.image.fid import FrechetInceptionDistance

# Metrics here are always computed by one process on its own features. torchmetrics would
# otherwise all-gather states on compute() whenever torch.distributed is initialised, which
# deadlocks when only rank 0 evaluates (the in-training FID inside Ray Train).
_LOCAL = {"sync_on_compute": False}


class Precomputed(nn.Module):
    """The torchmetrics "feature extractor" for inputs that already are feature vectors [B, D].

    `num_features` is what FrechetInceptionDistance reads to size its states (otherwise it probes
    the module with a dummy 299x299 image).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"features: expected shape [B, {self.num_features}], got {list(x.shape)}")
        return x


def _as_features(x: torch.Tensor, what: str, min_rows: int = 2) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a [N, D] matrix, got shape {list(x.shape)}")
    if x.shape[0] < min_rows:
        raise GanModelError(f"{what}: need at least {min_rows} samples, got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise GanModelError(f"{what}: features contain NaN or inf")
    return x.detach().to("cpu", torch.float64)


def _quiet(factory, *args, **kwargs):
    # KID and IS warn on construction that they keep all features in memory: that is the point.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        return factory(*args, **kwargs)


def fid_metric(real: torch.Tensor) -> FrechetInceptionDistance:
    """A FID metric holding `real` features; `reset()` keeps them (reset_real_features=False),
    so repeated evaluations against one reference set only add the fake features each time."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real = _as_features(real, "real features")
    metric = FrechetInceptionDistance(feature=Precomputed(real.shape[1]), reset_real_features=False, **_LOCAL)
    metric.update(real, real=True)
    return metric


def fid_metric_batches(batches: Iterable[torch.Tensor]) -> FrechetInceptionDistance:
    """`fid_metric` with the real features added a batch at a time ([B, D] each): torchmetrics keeps
    only their count, sum [D] and product sum [D, D] (float64), so memory does not grow with the
    number of real images. Equal to `fid_metric` on their concatenation up to summation order."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric, n = None, 0
    for feats in batches:
        feats = _as_features(feats, "real features", min_rows=1)
        if metric is None:
            metric = FrechetInceptionDistance(feature=Precomputed(feats.shape[1]), reset_real_features=False,
                                              **_LOCAL)
        metric.update(feats, real=True)
        n += feats.shape[0]
    if metric is None or n < 2:
        raise GanModelError(f"real features: need at least 2 samples, got {n}")
    return metric


def fid_against(metric: FrechetInceptionDistance, fake: torch.Tensor) -> float:
    """FID of `fake` features against the real features held by `metric` (see `fid_metric`)."""
    fake = _as_features(fake, "fake features")
    metric.reset()
    metric.update(fake, real=False)
    return float(metric.compute())


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] and [M, D].

    ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)); torchmetrics takes the trace of the
    square root as the sum of sqrt(eigenvalues of S_r S_f), in float64.
    """
    return fid_against(fid_metric(real), fake)


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subsets: int = 50, subset_size: int = 500,
                      seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of the unbiased MMD^2 over `subsets` random subsets.

    Kernel k(x, y) = (x.y / D + 1)^3. torchmetrics draws the subsets with the global torch RNG;
    it is forked and seeded here, so the result depends on `seed` only and the caller's RNG
    stream is unchanged.
    """
    real, fake = _as_features(real, "real features"), _as_features(fake, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]}, fake {fake.shape[1]}")
    n = min(real.shape[0], fake.shape[0])
    if not 2 <= subset_size <= n:
        raise GanModelError(f"kid_subset_size: {subset_size} must be in [2, {n}] (the smaller sample count)")
    from torchmetrics.image.kid import KernelInceptionDistance

    metric = _quiet(KernelInceptionDistance, feature=Precomputed(real.shape[1]), subsets=subsets,
                    subset_size=subset_size, **_LOCAL)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception Score from classifier logits [N, C]: mean and std over `splits` groups.

    torchmetrics shuffles the samples before splitting (global RNG, forked and seeded here). The
    score lies in [1, C]: C for confident predictions spread evenly over the classes. The std
    is the unbiased one over splits (0 for a single split).
    """
    logits = _as_features(logits, "logits", min_rows=splits)
    from torchmetrics.image.inception import InceptionScore

    metric = _quiet(InceptionScore, feature=Precomputed(logits.shape[1]), splits=splits, **_LOCAL)
    metric.update(logits)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        # One split has no spread; torchmetrics' std would warn and return NaN. Report 0.
        warnings.filterwarnings("ignore", message=".*degrees of freedom is <= 0.*")
        mean, std = metric.compute()
    return float(mean), float(std) if splits > 1 else 0.0


def feature_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [D] and unbiased covariance [D, D] (float64), as stored beside cached features."""
    f = _as_features(features, "features")
    return f.mean(dim=0), torch.cov(f.T, correction=1)
