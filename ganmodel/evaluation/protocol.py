"""The evaluate stage's protocol: generated vs real reference, the real-vs-real floor, and the
sheets people look at (sample grid, nearest neighbours).

Reference set A is drawn from the train split (what the generator learned); the floor's set B
from the held-out val+test images, disjoint from A. The generator stands where B stands: both are
compared with A at the same N, and a conditional generator is asked for B's labels, so its figures
and the floor's differ only by the images. `fid_ratio = fid / fid_floor` sets the figure against
what real data scores. The floor is mostly finite-N bias, so the ratio grows with N: compare it at
one N and on one dataset. Memorisation (`data_copying`) sets the generator's distances to the
whole train split against held-out images' distances (docs/evaluation.md). The calibration
ladder (`ladder`: B blurred by 1, 2, 4 px) says where the generator's FID stands on a scale made of
the data itself. Metrics that need classes are skipped, with the reason, where there are none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ganmodel.codebase import code_hash
from ganmodel.config import EvaluateParams
from ganmodel.data.prepared import Split, to_unit_range
from ganmodel.data.shards import ShardReader
from ganmodel.errors import GanModelError
from ganmodel.evaluation.cas import classification_accuracy_score
from ganmodel.evaluation.features import extract, is_conditional, sample_images
from ganmodel.evaluation.ladder import ladder_against, ladder_position
from ganmodel.evaluation.memorisation import data_copying
from ganmodel.evaluation.metrics import (
    EvalSpec,
    RealSets,
    compare_generated,
    generate,
    real_floor,
    skipped_metrics,
)
from ganmodel.evaluation.realstats import REAL_BATCH
from ganmodel.evaluation.reference import (
    MemoryReal,
    MemoryTrain,
    StreamedReal,
    StreamedTrain,
    real_split,
    train_reference,
)
from ganmodel.evaluation.sources import HeldOut

FLOOR_SUFFIX = "_floor"
# The figures reported next to their real floor (spreads and counts have no floor of interest).
FLOOR_KEYS = ("fid", "kid_mean", "is_mean", "precision", "recall", "density", "coverage",
              "classes_covered", "class_kl", "cond_accuracy", "cas", "data_copying", "train_distance_ratio")
# The per-class histogram goes to its own plot file, not to the headline metrics: twenty columns
# of it made `dvc metrics show` unreadable. MLflow keeps them as metrics of the evaluate run.
HISTOGRAM_PREFIXES = ("class_count_", "class_frac_", "class_real_frac_", "cond_accuracy_")


@dataclass
class EvaluationResult:
    metrics: dict[str, float]
    grid: torch.Tensor  # [grid_size, C, H, W] generated from fixed noise
    nn_sheet: torch.Tensor  # [rows * (1 + k), C, H, W]: generated, then its k nearest train images
    nn_cols: int
    # Per class: name, generated share, real reference share; empty without classes.
    histogram: list[dict[str, str | float]]
    grid_cols: int | None = None  # a conditional grid: one row per class
    ladder_position: str = ""  # where the FID stands on the calibration ladder
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it does not apply

    @property
    def headline(self) -> dict[str, float]:
        """The metrics without the per-class histogram: what `metrics/evaluate.json` holds."""
        return {k: v for k, v in self.metrics.items()
                if not k.startswith(HISTOGRAM_PREFIXES) or k.endswith(FLOOR_SUFFIX)}


def heldout(val: Split | ShardReader, test: Split | ShardReader) -> Split | HeldOut:
    """val then test as one split: concatenated in memory, or one reader over both."""
    if isinstance(val, Split) and isinstance(test, Split):
        return Split(torch.cat([val.images, test.images]), torch.cat([val.labels, test.labels]))
    if isinstance(val, Split) or isinstance(test, Split):
        raise TypeError("heldout: val and test must both be in memory or both be readers")
    return HeldOut(val, test)


def class_histogram_rows(metrics: dict[str, float], class_names: list[str],
                         floor: dict[str, float] | None = None) -> list[dict[str, str | float]]:
    """One row per class: its name, the share of generated images the classifier assigns to it,
    and its share of the real reference set (the target `classes_covered` and `class_kl` use);
    for a conditional generator also the accuracy on the images asked for that class. With the
    real `floor`, also what held-out real images score in the same places (`real_classified`,
    `cond_accuracy_real`): a class the classifier rarely finds even in real images cannot be
    judged for a generator either, and this column shows which."""
    rows: list[dict[str, str | float]] = []
    if "class_frac_0" not in metrics:  # no class figures (unlabelled data)
        return rows
    for c, name in enumerate(class_names):
        row: dict[str, str | float] = {"class": name, "generated": metrics[f"class_frac_{c}"],
                                       "real": metrics[f"class_real_frac_{c}"]}
        if floor is not None and f"class_frac_{c}" in floor:
            row["real_classified"] = floor[f"class_frac_{c}"]
        if "cond_accuracy" in metrics:
            row["cond_accuracy"] = metrics.get(f"cond_accuracy_{c}", float("nan"))
            if floor is not None and "cond_accuracy" in floor:
                row["cond_accuracy_real"] = floor.get(f"cond_accuracy_{c}", float("nan"))
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


def evaluation_code_hash() -> str:
    """The hash of the code that computes the figures: this module and everything it imports from
    the package (part of the protocol the register gate compares champions under)."""
    return code_hash(__name__)


def eval_spec(cfg: EvaluateParams) -> EvalSpec:
    """The metric settings of the `evaluate` params section."""
    return EvalSpec(n_samples=cfg.n_samples, seed=cfg.seed, batch_size=cfg.batch_size, pr_k=cfg.pr_k,
                    kid_subsets=cfg.kid_subsets, kid_subset_size=cfg.kid_subset_size,
                    metrics=tuple(cfg.metrics))


Train = MemoryTrain | StreamedTrain
Held = MemoryReal | StreamedReal


def _copying(train: Train, sets: RealSets, gen_feats: torch.Tensor, seed: int) -> tuple[dict, dict]:
    """`data_copying` of the generated sample (Q) against set B (P), and its floor: the same test
    with one half of B in the generator's place and the other half as P (at N/2 each, since a
    disjoint second held-out set of N is not always there: the null statistic is about 0 at any N)."""
    cells = train.cells(sets.b.feats.shape[0], seed)
    gen = data_copying(cells, sets.b.feats, gen_feats)
    half = sets.b.feats.shape[0] // 2
    floor = data_copying(cells, sets.b.feats[:half], sets.b.feats[half:])
    return gen, floor


def evaluate(generator: nn.Module, classifier: nn.Module, train: Split | ShardReader,
             held: Split | HeldOut, cfg: EvaluateParams, class_names: list[str],
             nn_k: int = 5) -> EvaluationResult:
    """All metrics for `generator` under the `evaluate` protocol, with the floor and ratios.

    The generator and the floor are treated alike (`RealSets`): both are compared with reference A
    (train), the floor's sample is B (held-out), and a conditional generator is asked for B's
    labels. CAS trains on the generated images and, for the floor, on A's real images; both are
    tested on the whole held-out split. Memorisation compares both with the whole train split.
    `classifier` is any feature network (`ganmodel.networks.featurenet`); without a class head
    (unlabelled data) the metrics that need classes are skipped (`EvaluationResult.skipped`).

    `train` and `held` are in memory (`Split`) or readers (`ShardReader`, `HeldOut`): a reader is
    streamed in bounded batches (`ganmodel.evaluation.reference`), never loaded whole, and gives
    the same figures up to float summation order."""
    if classifier.n_classes and len(class_names) != classifier.n_classes:
        raise ValueError(f"class_names: {len(class_names)} names, the classifier has {classifier.n_classes}")
    if train is held:
        raise GanModelError("evaluate: train and held-out are the same split; use two disjoint splits")
    t0 = time.perf_counter()
    spec = eval_spec(cfg)
    skipped = skipped_metrics(spec.metrics, classifier.n_classes > 0, is_conditional(generator))
    spec = replace(spec, metrics=tuple(m for m in spec.metrics if m not in skipped))
    ref = train_reference(classifier, train)
    try:
        return _evaluate(generator, classifier, ref, real_split(classifier, held), cfg, spec, class_names,
                         skipped, nn_k, t0)
    finally:
        ref.close()  # a streamed train split's feature file


def _evaluate(generator: nn.Module, classifier: nn.Module, train: Train, held: Held, cfg: EvaluateParams,
              spec: EvalSpec, class_names: list[str], skipped: dict[str, str], nn_k: int,
              t0: float) -> EvaluationResult:
    sets = RealSets(train.subset(spec.n_samples, spec.seed, "real reference set"),
                    held.subset(spec.n_samples, spec.seed + 1, "held-out real set"))
    sample = generate(generator, classifier, sets, spec)
    gen = compare_generated(sample, sets, spec)
    floor = real_floor(sets, spec)
    if sample.labels is not None and "cas" in spec.metrics:
        n_classes = classifier.n_classes
        gen["cas"] = classification_accuracy_score(sample.images, sample.labels, held.test_set, n_classes,
                                                   cfg.cas_epochs, spec.seed)
        floor["cas"] = classification_accuracy_score(train.images(sets.a.index), sets.a.labels, held.test_set,
                                                     n_classes, cfg.cas_epochs, spec.seed)
    if "data_copying" in spec.metrics:
        copy_gen, copy_floor = _copying(train, sets, sample.feats, spec.seed)
        gen.update(copy_gen)
        floor.update(copy_floor)
    metrics = dict(gen)
    for k in FLOOR_KEYS:  # a floor beside each figure the generator has
        if k in floor and k in gen:
            metrics[k + FLOOR_SUFFIX] = floor[k]
    # No KID ratio: the unbiased KID estimate of two real sets can be <= 0.
    metrics["fid_ratio"] = gen["fid"] / max(floor["fid"], 1e-12)
    # The ladder's rungs are B blurred; its floor is B itself, the very fid_floor above.
    ladder = ladder_against(classifier, sets.a.feats, held.images(sets.b.index), REAL_BATCH, sets.b.feats)
    metrics.update(ladder)
    metrics["eval_seed"] = cfg.seed

    grid, grid_cols = sample_grid(generator, cfg.grid_size, cfg.seed, cfg.batch_size)
    sheet = neighbour_sheet(generator, classifier, train, sets.b.labels[:cfg.nn_rows], cfg, nn_k)
    metrics["eval_time_s"] = time.perf_counter() - t0
    rows = class_histogram_rows(gen, class_names, floor)
    position = ladder_position(gen["fid"], ladder)
    return EvaluationResult(metrics, grid, sheet, nn_k + 1, rows, grid_cols, position, skipped)


def neighbour_sheet(generator: nn.Module, classifier: nn.Module, train: Train, labels: torch.Tensor,
                    cfg: EvaluateParams, nn_k: int) -> torch.Tensor:
    """`cfg.nn_rows` generated images (asked for `labels` when conditional), each followed by its
    `nn_k` nearest train images in feature space: memorisation at a glance."""
    rows = sample_images(generator, cfg.nn_rows, cfg.seed + 1, cfg.batch_size,
                         labels if is_conditional(generator) else None)
    feats, _ = extract(classifier, rows, cfg.batch_size)
    idx = train.neighbours(feats, nn_k)
    shape = tuple(rows.shape[1:])
    real = to_unit_range(train.images(idx.flatten())).view(cfg.nn_rows, nn_k, *shape)
    return torch.cat([rows.view(cfg.nn_rows, 1, *shape), real], dim=1).view(-1, *shape)
