"""The full evaluation protocol: every metric on N generated vs N real samples, and the same
metrics between two disjoint real sets (the "real floor": what a perfect generator would score
at this N with this classifier, since FID, KID and the k-NN metrics are all biased at finite N)."""

from __future__ import annotations

import torch
from torch import nn

from ganmodel.errors import GanModelError
from ganmodel.metrics.coverage import DEFAULT_MIN_RELATIVE_SHARE, class_coverage
from ganmodel.metrics.distances import fid_from_features, inception_score, kid_from_features
from ganmodel.metrics.features import extract, sample_images
from ganmodel.metrics.prdc import prdc
from ganmodel.metrics.stats_cache import RealStats
from ganmodel.networks.classifier import EvalClassifier

METRIC_KEYS = ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "density",
               "coverage", "classes_covered", "class_kl", "n_samples")


def pick(n_total: int, n: int, seed: int, what: str) -> torch.Tensor:
    """`n` distinct indices of `n_total`, seeded: a random subset, not the first n. (The official
    MNIST test split is not shuffled, and its first and second halves differ in writers.)"""
    if n > n_total:
        raise GanModelError(f"evaluate.n_samples: {n} exceeds the {n_total} images of the {what}")
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n]


def compare_features(real_feats: torch.Tensor, real_labels: torch.Tensor | None, fake_feats: torch.Tensor,
                     fake_logits: torch.Tensor, *, seed: int, pr_k: int, kid_subsets: int,
                     kid_subset_size: int,
                     min_relative_share: float = DEFAULT_MIN_RELATIVE_SHARE) -> dict[str, float]:
    """All metrics from features: `fake_*` (generated, or the second real set) vs `real_*`."""
    if real_feats.shape[0] != fake_feats.shape[0]:
        # The k-NN radii and the FID/KID bias depend on N; equal sizes keep the metrics comparable.
        raise ValueError(f"real and fake sets differ in size: {real_feats.shape[0]} vs {fake_feats.shape[0]}")
    kid_mean, kid_std = kid_from_features(real_feats, fake_feats, kid_subsets, kid_subset_size, seed)
    is_mean, is_std = inception_score(fake_logits, splits=10, seed=seed)
    out = {
        "fid": fid_from_features(real_feats, fake_feats),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "is_mean": is_mean,
        "is_std": is_std,
        **prdc(real_feats, fake_feats, k=pr_k),
        **class_coverage(fake_logits, real_labels, min_relative_share=min_relative_share),
        "n_samples": float(fake_feats.shape[0]),
    }
    return out


def _subset(classifier: EvalClassifier, images: torch.Tensor, labels: torch.Tensor, stats: RealStats | None,
            n: int, seed: int, batch_size: int, device, what: str) -> tuple[torch.Tensor, ...]:
    """Features, logits and labels of a seeded n-subset of a real set; from `stats` when given
    (it must describe exactly these images), else by featurising only the subset."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{what}: expected {images.shape[0]} labels, got shape {list(labels.shape)}")
    idx = pick(images.shape[0], n, seed, what)
    if stats is None:
        return (*extract(classifier, images[idx], batch_size, device), labels[idx].cpu().long())
    if stats.n != images.shape[0] or not torch.equal(stats.labels, labels.cpu().long()):
        raise GanModelError(f"cached real features ({stats.meta.get('split', '?')}, N={stats.n}) do not "
                            f"match the {images.shape[0]} images of the {what}; clear the stats cache")
    return stats.features[idx], stats.logits[idx], stats.labels[idx]


def evaluate_generator(generator: nn.Module, classifier: EvalClassifier, real_images: torch.Tensor,
                       real_labels: torch.Tensor, *, n_samples: int, seed: int, batch_size: int, pr_k: int,
                       kid_subsets: int, kid_subset_size: int, device: str | torch.device | None = None,
                       real_stats: RealStats | None = None) -> dict[str, float]:
    """Every metric for `n_samples` generated images vs a seeded random `n_samples` subset of the
    real reference set (uint8 images [N, 1, 28, 28] and labels [N]).

    `real_stats` (from `stats_cache.cached_stats` on the same images) skips featurising them.
    `seed` fixes z, the reference subset, the KID subsets and the IS shuffle.
    Returns METRIC_KEYS plus class_entropy and class_count_<c> / class_frac_<c> /
    class_real_frac_<c>, all floats.
    """
    feats, _, labels = _subset(classifier, real_images, real_labels, real_stats, n_samples, seed, batch_size,
                               device, "real reference set")
    fake = sample_images(generator, n_samples, seed, batch_size)
    fake_feats, fake_logits = extract(classifier, fake, batch_size, device)
    return compare_features(feats, labels, fake_feats, fake_logits, seed=seed, pr_k=pr_k,
                            kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)


def real_floor(classifier: EvalClassifier, images_a: torch.Tensor, labels_a: torch.Tensor,
               images_b: torch.Tensor, labels_b: torch.Tensor, *, n_samples: int, seed: int,
               batch_size: int, pr_k: int, kid_subsets: int, kid_subset_size: int,
               device: str | torch.device | None = None, stats_a: RealStats | None = None,
               stats_b: RealStats | None = None) -> dict[str, float]:
    """The same metrics with real set B (the evaluate stage: held-out val+test images) in the
    generator's place.

    Set A is the reference, subsampled exactly as in `evaluate_generator` with the same seed, so
    a generator's figures and the floor share one reference sample. A and B must be disjoint
    (different splits): overlapping sets would report a floor that is too good.
    """
    if images_a.data_ptr() == images_b.data_ptr():
        raise GanModelError("real_floor: the two real sets are the same tensor; use two disjoint splits")
    feats_a, _, lab_a = _subset(classifier, images_a, labels_a, stats_a, n_samples, seed, batch_size, device,
                                "real reference set")
    feats_b, logits_b, _ = _subset(classifier, images_b, labels_b, stats_b, n_samples, seed + 1, batch_size,
                                   device, "second real set")
    return compare_features(feats_a, lab_a, feats_b, logits_b, seed=seed, pr_k=pr_k,
                            kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
