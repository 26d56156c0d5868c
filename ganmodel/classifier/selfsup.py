"""Training the label-free feature network: rotation prediction on the real train split
(Gidaris, Singh & Komodakis 2018, "Unsupervised Representation Learning by Predicting Image
Rotations"), with model selection on val's rotation accuracy. It needs no labels, so it is the
feature network of an unlabelled folder, and a second opinion on labelled data."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganmodel.classifier.training import confusion_matrix, one_cycle, random_shift, unit_images
from ganmodel.config import ClassifierParams
from ganmodel.data.prepared import Split
from ganmodel.networks.selfsup import N_ROTATIONS, RotationNet, rotations


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
                         batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """(true, predicted) rotation of the four rotations of every image, in eval mode."""
    model.eval()
    true, pred = [], []
    for i in range(0, images.shape[0], batch_size):
        x, y = rotations(unit_images(images[i : i + batch_size]))
        true.append(y)
        pred.append(model(x).argmax(1))
    return torch.cat(true), torch.cat(pred)


def rotation_accuracy(model: RotationNet, images: torch.Tensor) -> float:
    true, pred = rotation_predictions(model, images)
    return float((true == pred).double().mean())


def fit_rotation_epoch(model: RotationNet, opt: torch.optim.Optimizer, sched: object, images: torch.Tensor,
                       batch_size: int, gen: torch.Generator) -> float:
    """One epoch over shuffled, randomly shifted images, each in all four rotations in the same
    batch (the paper found this better than one random rotation per image); the mean loss."""
    model.train()
    n = images.shape[0]
    perm = torch.randperm(n, generator=gen)
    total = 0.0
    for i in range(0, n, batch_size):
        idx = perm[i : i + batch_size]
        x, y = rotations(random_shift(unit_images(images[idx]), gen))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()  # type: ignore[attr-defined]
        total += loss.item() * idx.numel()
    return total / n


def train_rotation_net(cfg: ClassifierParams, train: Split, val: Split, test: Split,
                       log=print) -> RotationResult:
    """Adam on the rotation cross-entropy for `cfg.selfsup_epochs`, the classifier's optimiser
    settings otherwise; keeps the weights of the best validation epoch."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = RotationNet(cfg.feature_dim, tuple(train.images.shape[1:]))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    epochs = cfg.selfsup_epochs
    sched = one_cycle(opt, cfg.lr, epochs, train.images.shape[0], cfg.batch_size)
    best: tuple[float, dict | None] = (-1.0, None)
    history = []
    for epoch in range(epochs):
        loss = fit_rotation_epoch(model, opt, sched, train.images, cfg.batch_size, gen)
        val_acc = rotation_accuracy(model, val.images)
        history.append({"epoch": epoch + 1, "rotation_loss": loss, "rotation_val_accuracy": val_acc})
        log(f"rotation net epoch {epoch + 1}/{epochs}  loss {loss:.4f}  val rotation acc {val_acc:.4f}")
        if val_acc > best[0]:
            best = (val_acc, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])  # type: ignore[arg-type]
    model.eval()
    true, pred = rotation_predictions(model, test.images)
    return RotationResult(model, best[0], float((true == pred).double().mean()),
                          confusion_matrix(true, pred, N_ROTATIONS), history, time.perf_counter() - t0)
