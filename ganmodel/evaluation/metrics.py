"""The metrics, chosen by name from a small registry (in the spirit of stylegan3's `metric_main`),
and the protocol that runs them: N generated vs N real samples, and the same metrics between two
disjoint real sets (the "real floor": what a perfect generator would score at this N with this
classifier, since FID, KID and the k-NN metrics are all biased at finite N).

Every metric is a function of one `Comparison` (features of a real reference sample and of the
sample under test) returning named floats; `evaluate.metrics` in params.yaml picks which run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ganmodel.choices import PROTOCOL_METRICS, REQUIRED_METRICS  # noqa: F401 - re-exported with the registry
from ganmodel.errors import GanModelError
from ganmodel.evaluation import coverage, distances
from ganmodel.evaluation import prdc as prdc_mod
from ganmodel.evaluation.features import extract, is_conditional, sample_images
from ganmodel.evaluation.realstats import RealStats


@dataclass(frozen=True)
class Comparison:
    """A real reference sample and a sample under test (generated, or a second real set), N each."""

    real_feats: torch.Tensor  # float64 [N, D]
    real_labels: torch.Tensor | None  # int64 [N]: the target class distribution
    fake_feats: torch.Tensor  # float64 [N, D]
    fake_logits: torch.Tensor  # float64 [N, C]
    seed: int
    # The class each sample under test was asked for (a conditional generator) or is (a real
    # set); None for an unconditional generator.
    fake_labels: torch.Tensor | None = None
    pr_k: int = 3
    kid_subsets: int = 50
    kid_subset_size: int = 500
    min_relative_share: float = coverage.DEFAULT_MIN_RELATIVE_SHARE


MetricFn = Callable[[Comparison], dict[str, float]]
METRICS: dict[str, MetricFn] = {}


def register_metric(fn: MetricFn) -> MetricFn:
    """Add `fn` to the registry under its function name."""
    METRICS[fn.__name__] = fn
    return fn


@register_metric
def fid(c: Comparison) -> dict[str, float]:
    """Fréchet distance of Gaussians fitted to the features (Heusel et al. 2017, eq. 6)."""
    return {"fid": distances.fid_from_features(c.real_feats, c.fake_feats)}


@register_metric
def kid(c: Comparison) -> dict[str, float]:
    """Kernel Inception Distance, unbiased MMD^2 over subsets (Binkowski et al. 2018, eq. 4)."""
    mean, std = distances.kid_from_features(c.real_feats, c.fake_feats, c.kid_subsets, c.kid_subset_size,
                                            c.seed)
    return {"kid_mean": mean, "kid_std": std}


@register_metric
def inception_score(c: Comparison) -> dict[str, float]:
    """exp E[KL(p(y|x) || p(y))] over 10 splits (Salimans et al. 2016, sec. 4)."""
    mean, std = distances.inception_score(c.fake_logits, splits=10, seed=c.seed)
    return {"is_mean": mean, "is_std": std}


@register_metric
def prdc(c: Comparison) -> dict[str, float]:
    """Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)."""
    return prdc_mod.prdc(c.real_feats, c.fake_feats, k=c.pr_k)


@register_metric
def class_coverage(c: Comparison) -> dict[str, float]:
    """Classes covered and KL(generated || real) of the predicted classes (mode collapse)."""
    return coverage.class_coverage(c.fake_logits, c.real_labels, min_relative_share=c.min_relative_share)


@register_metric
def cond_accuracy(c: Comparison) -> dict[str, float]:
    """The evaluation classifier's accuracy on the samples against the classes they were asked
    for, overall and per class: a pretrained classifier's accuracy on generated data, the first
    evaluation the seed article names. On a real set it is the classifier's own accuracy (the
    floor). Unconditional generators have no requested classes: no figure."""
    if c.fake_labels is None:
        return {}
    pred = c.fake_logits.argmax(dim=1)
    hit = (pred == c.fake_labels).double()
    out = {"cond_accuracy": float(hit.mean())}
    for k in range(c.fake_logits.shape[1]):
        mask = c.fake_labels == k
        if mask.any():
            out[f"cond_accuracy_{k}"] = float(hit[mask].mean())
    return out


# Metrics that read class logits or labels: skipped, with the reason recorded, where the feature
# network has no class head (unlabelled data), never reported as zeros.
CLASS_METRICS = ("inception_score", "class_coverage", "cond_accuracy", "cas")
# Metrics of the classes a conditional generator was asked for.
CONDITIONAL_METRICS = ("cond_accuracy", "cas")
NO_CLASSES = "unlabelled data: the feature network has no class head"
UNCONDITIONAL = "unconditional generator: no classes asked for"


def skipped_metrics(metrics: Iterable[str], has_classes: bool, conditional: bool) -> dict[str, str]:
    """The metrics of `metrics` that do not apply, each with the reason."""
    out = {}
    for m in metrics:
        if m in CLASS_METRICS and not has_classes:
            out[m] = NO_CLASSES
        elif m in CONDITIONAL_METRICS and not conditional:
            out[m] = UNCONDITIONAL
    return out


DEFAULT_METRICS = ("fid", "kid", "inception_score", "prdc", "class_coverage", "cond_accuracy", "cas",
                   "data_copying")


def compare(c: Comparison, metrics: Iterable[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Run the named metrics on one comparison; adds `n_samples`."""
    if c.real_feats.shape[0] != c.fake_feats.shape[0]:
        # The k-NN radii and the FID/KID bias depend on N; equal sizes keep the metrics comparable.
        raise ValueError(f"real and fake sets differ in size: {c.real_feats.shape[0]} vs "
                         f"{c.fake_feats.shape[0]}")
    out: dict[str, float] = {}
    for name in metrics:
        if name in PROTOCOL_METRICS:
            continue
        if name not in METRICS:
            raise GanModelError(f"evaluate.metrics: unknown metric {name!r}; "
                                f"expected some of {sorted([*METRICS, *PROTOCOL_METRICS])}")
        out.update(METRICS[name](c))
    out["n_samples"] = float(c.fake_feats.shape[0])
    return out


def pick(n_total: int, n: int, seed: int, what: str) -> torch.Tensor:
    """`n` distinct indices of `n_total`, seeded: a random subset, not the first n. (The official
    MNIST test split is not shuffled, and its first and second halves differ in writers.)"""
    if n > n_total:
        raise GanModelError(f"evaluate.n_samples: {n} exceeds the {n_total} images of the {what}")
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n]


@dataclass(frozen=True)
class EvalSpec:
    """How samples are drawn and compared: N, the seed of z/subsets/KID/IS, and metric settings."""

    n_samples: int
    seed: int
    batch_size: int = 500
    pr_k: int = 3
    kid_subsets: int = 50
    kid_subset_size: int = 500
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def comparison(self, real_feats: torch.Tensor, real_labels: torch.Tensor, fake_feats: torch.Tensor,
                   fake_logits: torch.Tensor, fake_labels: torch.Tensor | None = None) -> Comparison:
        return Comparison(real_feats, real_labels, fake_feats, fake_logits, seed=self.seed, pr_k=self.pr_k,
                          kid_subsets=self.kid_subsets, kid_subset_size=self.kid_subset_size,
                          fake_labels=fake_labels)


@dataclass(frozen=True)
class RealSubset:
    """A seeded N-subset of a featurised real split: its rows, features, logits and labels."""

    index: torch.Tensor  # int64 [N], rows of the split
    feats: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor


def real_subset(stats: RealStats, n: int, seed: int, what: str) -> RealSubset:
    """The seeded n-subset of a featurised real split (`pick`)."""
    idx = pick(stats.n, n, seed, what)
    return RealSubset(idx, stats.features[idx], stats.logits[idx], stats.labels[idx])


@dataclass(frozen=True)
class RealSets:
    """The protocol's two real samples of N images each.

    A (the reference, seeded by `seed`) is drawn from the train split: what the generator learned.
    B (seeded by `seed + 1`) is drawn from the held-out split, disjoint from A: the floor's stand-in
    for a perfect generator. Every figure compares a sample under test with A; the generator and B
    are treated alike, and a conditional generator is asked for exactly B's labels, so the two
    differ only in their images, never in their class mix."""

    a: RealSubset
    b: RealSubset


def real_sets(real_a: RealStats, real_b: RealStats, p: EvalSpec) -> RealSets:
    """A and B (see `RealSets`) from the featurised train (`real_a`) and held-out (`real_b`) splits."""
    if real_a.features.data_ptr() == real_b.features.data_ptr():
        raise GanModelError("real_sets: the two real sets are the same; use two disjoint splits")
    return RealSets(real_subset(real_a, p.n_samples, p.seed, "real reference set"),
                    real_subset(real_b, p.n_samples, p.seed + 1, "held-out real set"))


@dataclass(frozen=True)
class Generated:
    """A seeded sample of a generator, featurised: what every metric of it reads."""

    images: torch.Tensor  # float [N, C, H, W] in [-1, 1]
    labels: torch.Tensor | None  # the classes asked for (conditional), else None
    feats: torch.Tensor
    logits: torch.Tensor


def generate(generator: nn.Module, classifier: nn.Module, sets: RealSets, p: EvalSpec,
             device: str | torch.device | None = None) -> Generated:
    """`p.n_samples` images from z seeded by `p.seed`; a conditional generator is asked for the
    labels of set B, as B's images are its stand-in in the floor."""
    labels = sets.b.labels if is_conditional(generator) else None
    images = sample_images(generator, p.n_samples, p.seed, p.batch_size, labels)
    feats, logits = extract(classifier, images, p.batch_size, device)
    return Generated(images, labels, feats, logits)


def compare_generated(gen: Generated, sets: RealSets, p: EvalSpec) -> dict[str, float]:
    """Every comparison metric of `p` for a generated sample against reference A."""
    return compare(p.comparison(sets.a.feats, sets.a.labels, gen.feats, gen.logits, gen.labels), p.metrics)


def real_floor(sets: RealSets, p: EvalSpec) -> dict[str, float]:
    """The same metrics with set B in the generator's place: what real data scores at this N with
    this classifier (FID, KID and the k-NN metrics are biased at finite N)."""
    b = sets.b
    return compare(p.comparison(sets.a.feats, sets.a.labels, b.feats, b.logits, b.labels), p.metrics)


def evaluate_generator(generator: nn.Module, classifier: nn.Module, real_a: RealStats,
                       real_b: RealStats, p: EvalSpec,
                       device: str | torch.device | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """(the generator's figures, the real floor) under `p`: every metric of `p` for `p.n_samples`
    generated images and for set B, each against reference A. `p.seed` fixes z, both subsets, the
    KID subsets and the IS shuffle."""
    sets = real_sets(real_a, real_b, p)
    return compare_generated(generate(generator, classifier, sets, p, device), sets, p), real_floor(sets, p)
