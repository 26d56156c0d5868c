"""Classification Accuracy Score (Ravuri & Vinyals 2019, "Classification Accuracy Score for
Conditional Generative Models", sec. 3): train a classifier on generated, labelled images only and
test it on real held-out images. It rewards samples that carry each class's real variety, which
FID in one feature space and a fixed classifier's accuracy do not measure. Its floor is the same
training on as many real images."""

from __future__ import annotations

import torch

from ganmodel.classifier.training import PREDICT_BATCH, fit_epoch, one_cycle, predict
from ganmodel.data.prepared import Split
from ganmodel.data.shards import ShardReader
from ganmodel.evaluation.sources import HeldOut
from ganmodel.networks.classifier import EvalClassifier

# The evaluation classifier's architecture and optimiser settings (params.yaml `classifier`
# defaults), fixed here so the evaluate stage's figures do not depend on another section.
FEATURE_DIM, LR, BATCH_SIZE = 128, 1e-3, 128


def classification_accuracy_score(images: torch.Tensor, labels: torch.Tensor,
                                  test: Split | ShardReader | HeldOut, n_classes: int, epochs: int,
                                  seed: int) -> float:
    """Accuracy on `test` (in memory, or a reader streamed in batches) of a fresh classifier, built
    for the images' shape, trained for `epochs` on `images` [N, C, H, W] (uint8, or float in
    [-1, 1]) with `labels` [N]; seeded, so a figure repeats exactly."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"labels: {labels.shape[0]} for {images.shape[0]} images")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = EvalClassifier(FEATURE_DIM, n_classes, tuple(images.shape[1:]))
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        sched = one_cycle(opt, LR, epochs, images.shape[0], BATCH_SIZE)
        for _ in range(epochs):
            fit_epoch(model, opt, sched, images, labels.long(), BATCH_SIZE, gen)
        if isinstance(test, Split):
            return float((predict(model, test.images) == test.labels).double().mean())
        # The batches `predict` makes of a tensor, so the same predictions; hits / n is the mean.
        hits = n = 0
        for x, y in test.iter_batches(PREDICT_BATCH):
            hits += int((predict(model, x) == y).sum())
            n += y.numel()
        return hits / n
