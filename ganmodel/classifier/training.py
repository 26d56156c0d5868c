"""Training the evaluation classifier on the real train split, with model selection on val and
the accuracy floor checked on test (a classifier that cannot tell classes apart would make
every feature-space metric meaningless).

Each split is in memory (`Split`) or a reader streamed in bounded batches (`ShardReader`, by
`train.data_loading`): a streamed train split is shuffled per epoch by `shuffled_batches` instead
of one in-memory permutation, and val/test are scored batch by batch into a confusion matrix."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganmodel.config import ClassifierParams
from ganmodel.data.prepared import Split, to_unit_range
from ganmodel.data.shards import ShardReader
from ganmodel.data.stream import shuffled_batches
from ganmodel.evaluation.sources import image_shape, labels_of, n_images
from ganmodel.networks.classifier import EvalClassifier

PREDICT_BATCH = 1000


@dataclass
class ClassifierResult:
    model: EvalClassifier
    val_accuracy: float  # of the selected epoch; balanced accuracy when `balanced`
    test_accuracy: float
    confusion: torch.Tensor  # [C, C] counts, rows = true class, cols = predicted
    history: list[dict[str, float]]
    wall_time_s: float
    balanced: bool = False  # trained with inverse-frequency class weights (`class_weights`)
    test_balanced_accuracy: float = float("nan")  # mean per-class recall on test


def max_shift(side: int) -> int:
    """Pixels of the random translation for images of `side` pixels: 2 at MNIST's 28, the same
    share of the image at other sides (at least 1)."""
    return max(1, round(2 * side / 28))


def random_shift(x: torch.Tensor, gen: torch.Generator, pad: int | None = None) -> torch.Tensor:
    """Random per-image translations by up to `pad` pixels (default `max_shift`): cheap
    augmentation that lifts accuracy on the 4k-image mnist5k split without changing the class."""
    b, side = x.shape[0], x.shape[-1]
    pad = max_shift(side) if pad is None else pad
    # One pixel is 2 / side in affine_grid's [-1, 1] coordinates (align_corners=False).
    shifts = torch.randint(-pad, pad + 1, (b, 2), generator=gen).float() * (2.0 / side)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shifts
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Background is -1 (black) in [-1, 1] space: shift x+1 with zero padding, then undo.
    return F.grid_sample(x + 1.0, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1.0


def unit_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] images as float [-1, 1] (real splits or generated samples)."""
    return to_unit_range(images) if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = PREDICT_BATCH) -> torch.Tensor:
    """The argmax of `model`'s output per image (eval mode)."""
    model.eval()
    return torch.cat([model(unit_images(images[i : i + batch_size])).argmax(1)
                      for i in range(0, images.shape[0], batch_size)])


# `class_balance: auto` weighs the classes once the largest train class has this many times the
# images of the smallest. Below it (mnist5k: 400 images per class) the plain loss is kept, so the built-in
# datasets' classifier, and every figure measured in it, stays byte for byte what it was.
BALANCE_RATIO = 2.0


def class_weights(labels: torch.Tensor, n_classes: int, mode: str) -> torch.Tensor | None:
    """Cross-entropy weights n / (C * count_c) (scikit-learn's "balanced", King & Zeng 2001), or
    None for the plain loss. On a folder of 2,158 images in one class and 20 in another, the plain
    loss learns never to predict the small class, so the evaluation could not tell whether a
    generator makes it: every per-class figure (coverage, cond_accuracy) would read 0, the real
    floor's too. mode: `none`, `balanced`, or `auto` (balanced from `BALANCE_RATIO` on)."""
    counts = torch.bincount(labels.long(), minlength=n_classes).double()
    present = counts[counts > 0]
    if mode == "none" or (mode == "auto" and float(present.max() / present.min()) < BALANCE_RATIO):
        return None
    weights = counts.sum() / (n_classes * counts.clamp(min=1))
    return weights.float()


def balanced_accuracy(labels: torch.Tensor, preds: torch.Tensor, n_classes: int) -> float:
    """The mean over classes present in `labels` of the share of their images predicted right."""
    return balanced_from(confusion_matrix(labels, preds, n_classes))


def balanced_from(confusion: torch.Tensor) -> float:
    """`balanced_accuracy` from a confusion matrix (rows = true class)."""
    cm = confusion.double()
    support = cm.sum(1)
    return float((cm.diagonal()[support > 0] / support[support > 0]).mean())


def fit_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, images: torch.Tensor,
              labels: torch.Tensor, batch_size: int, gen: torch.Generator,
              weight: torch.Tensor | None = None) -> float:
    """One epoch of Adam on (class-weighted) cross-entropy over shuffled, randomly shifted images;
    the mean loss."""
    perm = torch.randperm(images.shape[0], generator=gen)
    return fit_batches(model, opt, sched, ((images[idx], labels[idx]) for idx in perm.split(batch_size)),
                       gen, weight)


def fit_stream_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, reader: ShardReader,
                     batch_size: int, gen: torch.Generator, seed: int, epoch: int,
                     weight: torch.Tensor | None = None) -> float:
    """`fit_epoch` over a streamed split: epoch `epoch` of `shuffled_batches` (every image once,
    the last batch short, as in memory), holding about `SHUFFLE_ROWS` images."""
    return fit_batches(model, opt, sched, shuffled_batches(reader, batch_size, seed, epoch, drop_last=False),
                       gen, weight)


def fit_batches(model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                batches: Iterable[tuple[torch.Tensor, torch.Tensor]], gen: torch.Generator,
                weight: torch.Tensor | None = None) -> float:
    """One pass of Adam on (class-weighted) cross-entropy over randomly shifted (images, labels)
    batches; the mean loss."""
    model.train()
    total, n = 0.0, 0
    for images, labels in batches:
        x = random_shift(unit_images(images), gen)
        loss = F.cross_entropy(model(x), labels, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * labels.numel()
        n += labels.numel()
    return total / n


def split_confusion(model: nn.Module, reader: ShardReader, n_classes: int) -> torch.Tensor:
    """The confusion matrix of `model` on a streamed split, batch by batch (`predict`'s batches)."""
    cm = torch.zeros(n_classes, n_classes, dtype=torch.int64)
    for x, y in reader.iter_batches(PREDICT_BATCH):
        cm += confusion_matrix(y, predict(model, x), n_classes)
    return cm


def _val_score(model: nn.Module, val: Split | ShardReader, n_classes: int, balanced: bool) -> float:
    """Accuracy on val, balanced when the loss is weighted (the quantity it optimises)."""
    if isinstance(val, Split):
        val_pred = predict(model, val.images)
        return (balanced_accuracy(val.labels, val_pred, n_classes) if balanced
                else (val_pred == val.labels).float().mean().item())
    cm = split_confusion(model, val, n_classes)
    return balanced_from(cm) if balanced else float(cm.trace()) / max(1, int(cm.sum()))


def one_cycle(opt: torch.optim.Optimizer, lr: float, epochs: int, n: int, batch_size: int) -> Any:
    """The one-cycle schedule (peak 3x lr) over `epochs` passes of `n` images."""
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 3, total_steps=epochs * (-(-n // batch_size)))


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, n_classes: int) -> torch.Tensor:
    return torch.bincount(labels * n_classes + preds, minlength=n_classes**2).view(n_classes, n_classes)


def train_classifier(cfg: ClassifierParams, train: Split | ShardReader, val: Split | ShardReader,
                     test: Split | ShardReader, n_classes: int, log=print) -> ClassifierResult:
    """Adam on cross-entropy, class-weighted on unbalanced data (`class_weights`); keeps the weights
    of the best validation epoch, by balanced accuracy when weighted (the quantity it optimises).
    Splits in memory or streamed (see the module docstring)."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = EvalClassifier(cfg.feature_dim, n_classes, image_shape(train))
    weight = class_weights(labels_of(train), n_classes, cfg.class_balance)  # streamed: the label column
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = one_cycle(opt, cfg.lr, cfg.epochs, n_images(train), cfg.batch_size)
    best = (-1.0, None)
    history = []
    for epoch in range(cfg.epochs):
        if isinstance(train, Split):
            loss = fit_epoch(model, opt, sched, train.images, train.labels, cfg.batch_size, gen, weight)
        else:
            loss = fit_stream_epoch(model, opt, sched, train, cfg.batch_size, gen, cfg.seed, epoch, weight)
        val_acc = _val_score(model, val, n_classes, weight is not None)
        key = "val_balanced_accuracy" if weight is not None else "val_accuracy"
        history.append({"epoch": epoch + 1, "train_loss": loss, key: val_acc})
        log(f"classifier epoch {epoch + 1}/{cfg.epochs}  loss {loss:.4f}  "
            f"{key.replace('_', ' ')} {val_acc:.4f}")
        if val_acc > best[0]:
            best = (val_acc, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    model.eval()
    if isinstance(test, Split):
        preds = predict(model, test.images)
        test_acc = (preds == test.labels).float().mean().item()
        cm = confusion_matrix(test.labels, preds, n_classes)
        test_balanced = balanced_accuracy(test.labels, preds, n_classes)
    else:
        cm = split_confusion(model, test, n_classes)
        test_acc, test_balanced = float(cm.trace()) / max(1, int(cm.sum())), balanced_from(cm)
    return ClassifierResult(model, best[0], test_acc, cm, history, time.perf_counter() - t0,
                            weight is not None, test_balanced)
