"""The in-training FID: a cheap, fixed-protocol FID called every `train.eval_every` epochs."""

from __future__ import annotations

import itertools
import os

import torch
from torch import nn

from ganmodel.artifacts import load_classifier
from ganmodel.data.shards import ShardReader
from ganmodel.errors import GanModelError
from ganmodel.evaluation.distances import fid_against, fid_metric, fid_metric_batches
from ganmodel.evaluation.features import extract, is_conditional, proportional_labels, sample_images
from ganmodel.evaluation.realstats import REAL_BATCH, compute_stats

# Streamed splits: the real statistics of the quick FID come from at most this many train images.
QUICK_REAL_MAX = 50_000
# Fixed, so successive epochs are compared on the same z: the curve then moves only with the
# weights, not with sampling noise. Distinct from evaluate.seed, so the final report is not
# measured on the very z the training run was monitored with.
QUICK_SEED = 20240601


class QuickFID:
    """`QuickFID(...)(generator) -> {"fid": float}` against the real training images.

    The classifier is loaded and the real images featurised once; each call samples `n_samples`
    images with a fixed seed and adds only their features to a torchmetrics FID that keeps the
    real part. With few samples FID is biased upwards (Chong & Forsyth 2020), so compare these
    values with each other, not with the final evaluation at a larger N.

    `real_images` is the train split's uint8 tensor, or its `ShardReader`: then the real part is
    accumulated batch by batch (memory bounded by `REAL_BATCH`, not by the split), and the labels
    default to the reader's (`real_labels` overrides them). Both give the same FID up to float64
    summation order.
    """

    def __init__(self, classifier_path: str | os.PathLike[str], real_images: torch.Tensor | ShardReader,
                 n_samples: int, device: str | torch.device = "cpu", batch_size: int = 500,
                 real_labels: torch.Tensor | None = None) -> None:
        if n_samples < 2:
            raise GanModelError(f"train.eval_samples: FID needs at least 2 samples, got {n_samples}")
        self.device = torch.device(device)
        self.classifier, _ = load_classifier(classifier_path, self.device)
        self.n_samples, self.batch_size = n_samples, batch_size
        if isinstance(real_images, ShardReader):
            if real_labels is None:  # the label column alone: 8 bytes an image
                real_labels = real_images.labels()
            labels = real_labels
            # At most QUICK_REAL_MAX images, the first in stored order (the splits are stored
            # shuffled, so a uniform sample): rank 0 featurises them while the other ranks wait
            # in their first collective, which must not outlast the process group's timeout.
            batches = itertools.islice(real_images.iter_batches(REAL_BATCH), -(-QUICK_REAL_MAX // REAL_BATCH))
            self._metric = fid_metric_batches(extract(self.classifier, x, REAL_BATCH, self.device)[0]
                                              for x, _ in batches)
        else:
            labels = (real_labels if real_labels is not None
                      else torch.zeros(len(real_images), dtype=torch.long))
            stats = compute_stats(self.classifier, real_images, labels, self.device)
            self._metric = fid_metric(stats.features)
        # A conditional generator is asked for classes in the real proportions (fixed, like z).
        self._labels = (proportional_labels(labels, min(n_samples, labels.shape[0]), QUICK_SEED)
                        if real_labels is not None else None)

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        labels = None
        if is_conditional(generator):
            if self._labels is None or self._labels.shape[0] != self.n_samples:
                raise GanModelError("train.eval_samples: the in-training FID of a conditional generator "
                                    "needs the train labels and at most as many samples as train images")
            labels = self._labels
        images = sample_images(generator, self.n_samples, QUICK_SEED, self.batch_size, labels)
        feats, _ = extract(self.classifier, images, self.batch_size, self.device)
        return {"fid": fid_against(self._metric, feats)}
