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
from ganmodel.evaluation.cas import classification_accuracy_score
from ganmodel.evaluation.features import extract, is_conditional, sample_images
from ganmodel.evaluation.metrics import EvalSpec, compare_generated, generate, pick, real_floor
from ganmodel.evaluation.prdc import nearest_neighbours
from ganmodel.evaluation.realstats import compute_stats
from ganmodel.networks.classifier import EvalClassifier

FLOOR_SUFFIX = "_floor"
# The figures reported next to their real floor (spreads and counts have no floor of interest).
FLOOR_KEYS = ("fid", "kid_mean", "is_mean", "precision", "recall", "density", "coverage",
              "classes_covered", "class_kl", "cond_accuracy", "cas")
# The per-class histogram goes to its own plot file, not to the headline metrics: twenty columns
# of it made `dvc metrics show` unreadable. MLflow keeps them as metrics of the evaluate run.
HISTOGRAM_PREFIXES = ("class_count_", "class_frac_", "class_real_frac_", "cond_accuracy_")


@dataclass
class EvaluationResult:
    metrics: dict[str, float]
    grid: torch.Tensor  # [grid_size, 1, 28, 28] generated from fixed noise
    nn_sheet: torch.Tensor  # [rows * (1 + k), 1, 28, 28]: generated, then its k nearest train images
    nn_cols: int
    histogram: list[dict[str, str | float]]  # per class: name, generated share, real reference share
    grid_cols: int | None = None  # a conditional grid: one row per class

    @property
    def headline(self) -> dict[str, float]:
        """The metrics without the per-class histogram: what `metrics/evaluate.json` holds."""
        return {k: v for k, v in self.metrics.items()
                if not k.startswith(HISTOGRAM_PREFIXES) or k.endswith(FLOOR_SUFFIX)}


def heldout(val: Split, test: Split) -> Split:
    return Split(torch.cat([val.images, test.images]), torch.cat([val.labels, test.labels]))


def class_histogram_rows(metrics: dict[str, float], class_names: list[str]) -> list[dict[str, str | float]]:
    """One row per class: its name, the share of generated images the classifier assigns to it,
    and its share of the real reference set (the target `classes_covered` and `class_kl` use);
    for a conditional generator also the accuracy on the images asked for that class."""
    rows: list[dict[str, str | float]] = []
    for c, name in enumerate(class_names):
        row: dict[str, str | float] = {"class": name, "generated": metrics[f"class_frac_{c}"],
                                       "real": metrics[f"class_real_frac_{c}"]}
        if "cond_accuracy" in metrics:
            row["cond_accuracy"] = metrics.get(f"cond_accuracy_{c}", float("nan"))
        rows.append(row)
    return rows


def sample_grid(generator: nn.Module, n: int, seed: int, batch_size: int) -> tuple[torch.Tensor, int | None]:
    """The sample sheet: `n` images; for a conditional generator one row per class instead
    (n // n_classes columns, at least one), so every class shows. Returns (images, columns)."""
    if not is_conditional(generator):
        return sample_images(generator, n, seed, batch_size), None
    cols = max(1, n // generator.n_classes)
    labels = torch.arange(generator.n_classes).repeat_interleave(cols)
    return sample_images(generator, labels.shape[0], seed, batch_size, labels), cols


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
    sample = generate(generator, classifier, stats_a, spec)
    gen = compare_generated(sample, stats_a, spec)
    floor = real_floor(stats_a, stats_b, spec)
    if sample.labels is not None and "cas" in spec.metrics:
        # Trained on the N generated images vs on N real train images (the reference subset).
        idx = pick(train.images.shape[0], spec.n_samples, spec.seed, "real reference set")
        n_classes = classifier.n_classes
        gen["cas"] = classification_accuracy_score(sample.images, sample.labels, held, n_classes,
                                                   cfg.cas_epochs, spec.seed)
        floor["cas"] = classification_accuracy_score(train.images[idx], train.labels[idx], held, n_classes,
                                                     cfg.cas_epochs, spec.seed)
    metrics = dict(gen)
    for k in FLOOR_KEYS:  # a floor beside each figure the generator has
        if k in floor and k in gen:
            metrics[k + FLOOR_SUFFIX] = floor[k]
    # No KID ratio: the unbiased KID estimate of two real sets can be <= 0.
    metrics["fid_ratio"] = gen["fid"] / max(floor["fid"], 1e-12)
    metrics["eval_seed"] = cfg.seed

    grid, grid_cols = sample_grid(generator, cfg.grid_size, cfg.seed, cfg.batch_size)
    row_labels = stats_a.labels[:cfg.nn_rows] if is_conditional(generator) else None
    rows = sample_images(generator, cfg.nn_rows, cfg.seed + 1, cfg.batch_size, row_labels)
    feats, _ = extract(classifier, rows, cfg.batch_size)
    idx = nearest_neighbours(feats, stats_a.features, k=nn_k)
    real = to_unit_range(train.images[idx.flatten()]).view(cfg.nn_rows, nn_k, 1, 28, 28)
    sheet = torch.cat([rows.view(cfg.nn_rows, 1, 1, 28, 28), real], dim=1).view(-1, 1, 28, 28)
    metrics["eval_time_s"] = time.perf_counter() - t0
    return EvaluationResult(metrics, grid, sheet, nn_k + 1, class_histogram_rows(gen, class_names), grid_cols)
