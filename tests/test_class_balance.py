"""The evaluation classifier on unbalanced data: inverse-frequency class weights, chosen by
`classifier.class_balance`, so that a small class is predicted at all (and the per-class figures
can see it), while a balanced dataset keeps the plain loss, byte for byte."""

from __future__ import annotations

import pytest
import torch

from ganmodel.classifier.training import (
    BALANCE_RATIO,
    balanced_accuracy,
    class_weights,
    train_classifier,
)
from ganmodel.config import ClassifierParams, load_params
from ganmodel.data.prepared import Split
from ganmodel.errors import GanModelError


def test_weights_are_inverse_frequency_and_auto_needs_a_real_imbalance():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    w = class_weights(labels, 3, "balanced")
    assert torch.allclose(w, torch.tensor([100 / 180, 100 / 90, 100 / 30]))
    # Weighted counts are equal: every class carries the same total weight in the loss.
    counts = torch.bincount(labels).float()
    assert torch.allclose(w * counts, torch.full((3,), 100 / 3))
    assert class_weights(labels, 3, "none") is None
    assert class_weights(labels, 3, "auto") is not None  # 6x
    near = torch.tensor([0] * 19 + [1] * 10)  # 1.9x: below BALANCE_RATIO
    assert BALANCE_RATIO == 2.0 and class_weights(near, 2, "auto") is None
    assert class_weights(torch.tensor([0] * 20 + [1] * 10), 2, "auto") is not None


def test_mnist5k_keeps_the_plain_loss(mnist5k):
    # The built-in datasets' classifier (and the default FID measured in it) must not change.
    assert class_weights(mnist5k["train"].labels, 10, "auto") is None


def test_balanced_accuracy_is_the_mean_per_class_recall():
    labels = torch.tensor([0, 0, 0, 0, 1])
    preds = torch.tensor([0, 0, 0, 0, 0])
    assert balanced_accuracy(labels, preds, 3) == pytest.approx(0.5)  # class 2 absent: not averaged
    assert balanced_accuracy(labels, labels, 3) == 1.0


def test_class_balance_is_validated_by_name(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("classifier:\n  class_balance: sometimes\n")
    with pytest.raises(GanModelError, match="classifier.class_balance"):
        load_params(bad)


def _unbalanced(split: Split, small_class: int, keep: int) -> Split:
    """`split` with all but the first `keep` images of `small_class` dropped."""
    idx = (split.labels == small_class).nonzero().flatten()
    drop = torch.zeros(split.labels.shape[0], dtype=torch.bool)
    drop[idx[keep:]] = True
    return Split(split.images[~drop], split.labels[~drop])


def test_weights_make_a_small_class_visible_to_the_classifier(mnist5k):
    # 12 images of 9s against ~110 of every other digit: after 4 short epochs the plain loss never
    # answers "9" (recall 0.0 with seed 0), the weighted one finds about half of the 9s (0.58).
    train = _unbalanced(Split(mnist5k["train"].images[:1100], mnist5k["train"].labels[:1100]), 9, 12)
    val, test = mnist5k["val"], mnist5k["test"]
    recall = {}
    for mode in ("none", "balanced"):
        cfg = ClassifierParams(epochs=4, feature_dim=64, seed=0, class_balance=mode)
        res = train_classifier(cfg, train, val, test, 10, log=lambda _m: None)
        assert res.balanced == (mode == "balanced")
        nines = res.confusion[9]
        recall[mode] = float(nines[9] / nines.sum())
    assert recall["balanced"] > recall["none"] + 0.3, recall
