"""Training the label-free feature network: rotation prediction on the real train split
(Gidaris, Singh & Komodakis 2018, "Unsupervised Representation Learning by Predicting Image
Rotations"), with model selection on val's rotation accuracy. It needs no labels, so it is the
feature network of an unlabelled folder, and a second opinion on labelled data. Splits in memory
or streamed, as the classifier's (`ganmodel.classifier.training`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganmodel.classifier.training import confusion_matrix, one_cycle, random_shift, unit_images
from ganmodel.config import ClassifierParams
from ganmodel.data.prepared import Split
from ganmodel.data.shards import ShardReader
from ganmodel.data.stream import shuffled_batches
from ganmodel.evaluation.sources import image_shape, n_images
from ganmodel.networks.selfsup import N_ROTATIONS, RotationNet, rotations

ROTATION_BATCH = 250


@dataclass
class RotationResult:
    model: RotationNet
    val_accuracy: float  # of the rotation, over the four rotations of every val image
    test_accuracy: float
    confusion: torch.Tensor  # [4, 4] counts on test, rows = true rotation
    history: list[dict[str, float]]
    wall_time_s: float


@torch.no_grad()
def rotation_predictions(model: RotationNet, images: torch.Tensor,
                         batch_size: int = ROTATION_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(true, predicted) rotation of the four rotations of every image, in eval mode."""
    model.eval()
    true, pred = [], []
    for i in range(0, images.shape[0], batch_size):
        x, y = rotations(unit_images(images[i : i + batch_size]))
        true.append(y)
        pred.append(model(x).argmax(1))
    return torch.cat(true), torch.cat(pred)


def rotation_confusion(model: RotationNet, reader: ShardReader) -> torch.Tensor:
    """[4, 4] counts (rows = true rotation) over the four rotations of every image of a streamed
    split, batch by batch (`rotation_predictions`'s batches)."""
    cm = torch.zeros(N_ROTATIONS, N_ROTATIONS, dtype=torch.int64)
    for x, _ in reader.iter_batches(ROTATION_BATCH):
        cm += confusion_matrix(*rotation_predictions(model, x), N_ROTATIONS)
    return cm


def rotation_accuracy(model: RotationNet, images: torch.Tensor | ShardReader) -> float:
    if isinstance(images, ShardReader):
        cm = rotation_confusion(model, images)
        return float(cm.trace()) / max(1, int(cm.sum()))
    true, pred = rotation_predictions(model, images)
    return float((true == pred).double().mean())


def fit_rotation_epoch(model: RotationNet, opt: torch.optim.Optimizer, sched: object,
                       images: torch.Tensor | ShardReader, batch_size: int, gen: torch.Generator,
                       seed: int = 0, epoch: int = 0) -> float:
    """One epoch over shuffled, randomly shifted images, each in all four rotations in the same
    batch (the paper found this better than one random rotation per image); the mean loss. A
    streamed split is shuffled by `shuffled_batches(reader, batch_size, seed, epoch)`."""
    if isinstance(images, ShardReader):
        batches: Iterable[torch.Tensor] = (x for x, _ in shuffled_batches(images, batch_size, seed, epoch,
                                                                         drop_last=False))
    else:
        perm = torch.randperm(images.shape[0], generator=gen)
        batches = (images[idx] for idx in perm.split(batch_size))
    model.train()
    total, n = 0.0, 0
    for batch in batches:
        x, y = rotations(random_shift(unit_images(batch), gen))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()  # type: ignore[attr-defined]
        total += loss.item() * batch.shape[0]
        n += batch.shape[0]
    return total / n


def train_rotation_net(cfg: ClassifierParams, train: Split | ShardReader, val: Split | ShardReader,
                       test: Split | ShardReader, log=print) -> RotationResult:
    """Adam on the rotation cross-entropy for `cfg.selfsup_epochs`, the classifier's optimiser
    settings otherwise; keeps the weights of the best validation epoch."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = RotationNet(cfg.feature_dim, image_shape(train))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    epochs = cfg.selfsup_epochs
    sched = one_cycle(opt, cfg.lr, epochs, n_images(train), cfg.batch_size)
    best: tuple[float, dict | None] = (-1.0, None)
    history = []
    for epoch in range(epochs):
        images = train.images if isinstance(train, Split) else train
        loss = fit_rotation_epoch(model, opt, sched, images, cfg.batch_size, gen, cfg.seed, epoch)
        val_acc = rotation_accuracy(model, val.images if isinstance(val, Split) else val)
        history.append({"epoch": epoch + 1, "rotation_loss": loss, "rotation_val_accuracy": val_acc})
        log(f"rotation net epoch {epoch + 1}/{epochs}  loss {loss:.4f}  val rotation acc {val_acc:.4f}")
        if val_acc > best[0]:
            best = (val_acc, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])  # type: ignore[arg-type]
    model.eval()
    if isinstance(test, Split):
        true, pred = rotation_predictions(model, test.images)
        test_acc, cm = float((true == pred).double().mean()), confusion_matrix(true, pred, N_ROTATIONS)
    else:
        cm = rotation_confusion(model, test)
        test_acc = float(cm.trace()) / max(1, int(cm.sum()))
    return RotationResult(model, best[0], test_acc, cm, history, time.perf_counter() - t0)
