"""The evaluate stage's protocol: generated vs real reference, the real-vs-real floor, and the
sheets people look at (sample grid, nearest neighbours).

Reference set A is the train split (what the generator learned); the floor's set B is the
held-out val+test images, disjoint from A. Both are compared at the same N, and
`fid_ratio = fid / fid_floor` sets the figure against what real data scores. The floor is mostly
finite-N bias, so the ratio grows with N: compare it at one N and on one dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ganmodel.config import EvaluateParams
from ganmodel.data.prepared import Split, to_unit_range
from ganmodel.evaluation.features import extract, sample_images
from ganmodel.evaluation.metrics import EvalSpec, evaluate_generator, real_floor
from ganmodel.evaluation.prdc import nearest_neighbours
from ganmodel.evaluation.realstats import compute_stats
from ganmodel.networks.classifier import EvalClassifier

FLOOR_SUFFIX = "_floor"
# The figures reported next to their real floor (spreads and counts have no floor of interest).
FLOOR_KEYS = ("fid", "kid_mean", "is_mean", "precision", "recall", "density", "coverage",
              "classes_covered", "class_kl")
# The per-class histogram goes to its own plot file, not to the headline metrics: twenty columns
# of it made `dvc metrics show` unreadable. MLflow keeps them as metrics of the evaluate run.
HISTOGRAM_PREFIXES = ("class_count_", "class_frac_", "class_real_frac_")


@dataclass
class EvaluationResult:
    metrics: dict[str, float]
    grid: torch.Tensor  # [grid_size, 1, 28, 28] generated from fixed noise
    nn_sheet: torch.Tensor  # [rows * (1 + k), 1, 28, 28]: generated, then its k nearest train images
    nn_cols: int
    histogram: list[dict[str, str | float]]  # per class: name, generated share, real reference share

    @property
    def headline(self) -> dict[str, float]:
        """The metrics without the per-class histogram: what `metrics/evaluate.json` holds."""
        return {k: v for k, v in self.metrics.items() if not k.startswith(HISTOGRAM_PREFIXES)}


def heldout(val: Split, test: Split) -> Split:
    return Split(torch.cat([val.images, test.images]), torch.cat([val.labels, test.labels]))


def class_histogram_rows(metrics: dict[str, float], class_names: list[str]) -> list[dict[str, str | float]]:
    """One row per class: its name, the share of generated images the classifier assigns to it,
    and its share of the real reference set (the target `classes_covered` and `class_kl` use)."""
    return [{"class": name, "generated": metrics[f"class_frac_{c}"], "real": metrics[f"class_real_frac_{c}"]}
            for c, name in enumerate(class_names)]


def eval_spec(cfg: EvaluateParams) -> EvalSpec:
    """The metric settings of the `evaluate` params section."""
    return EvalSpec(n_samples=cfg.n_samples, seed=cfg.seed, batch_size=cfg.batch_size, pr_k=cfg.pr_k,
                    kid_subsets=cfg.kid_subsets, kid_subset_size=cfg.kid_subset_size,
                    metrics=tuple(cfg.metrics))


def evaluate(generator: nn.Module, classifier: EvalClassifier, train: Split, held: Split,
             cfg: EvaluateParams, class_names: list[str], nn_k: int = 5) -> EvaluationResult:
    """All metrics for `generator` under the `evaluate` protocol, with the floor and ratios."""
    if len(class_names) != classifier.n_classes:
        raise ValueError(f"class_names: {len(class_names)} names, the classifier has {classifier.n_classes}")
    t0 = time.perf_counter()
    spec = eval_spec(cfg)
    stats_a = compute_stats(classifier, train.images, train.labels)
    stats_b = compute_stats(classifier, held.images, held.labels)
    gen = evaluate_generator(generator, classifier, stats_a, spec)
    floor = real_floor(stats_a, stats_b, spec)
    metrics = dict(gen)
    for k in FLOOR_KEYS:
        if k in floor:
            metrics[k + FLOOR_SUFFIX] = floor[k]
    # No KID ratio: the unbiased KID estimate of two real sets can be <= 0.
    metrics["fid_ratio"] = gen["fid"] / max(floor["fid"], 1e-12)
    metrics["eval_seed"] = cfg.seed

    grid = sample_images(generator, cfg.grid_size, cfg.seed, cfg.batch_size)
    rows = sample_images(generator, cfg.nn_rows, cfg.seed + 1, cfg.batch_size)
    feats, _ = extract(classifier, rows, cfg.batch_size)
    idx = nearest_neighbours(feats, stats_a.features, k=nn_k)
    real = to_unit_range(train.images[idx.flatten()]).view(cfg.nn_rows, nn_k, 1, 28, 28)
    sheet = torch.cat([rows.view(cfg.nn_rows, 1, 1, 28, 28), real], dim=1).view(-1, 1, 28, 28)
    metrics["eval_time_s"] = time.perf_counter() - t0
    return EvaluationResult(metrics, grid, sheet, nn_k + 1, class_histogram_rows(gen, class_names))
