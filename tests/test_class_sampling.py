"""`train.class_sampling`: how often a conditional run draws each class (ganmodel/training/sampling.py).

The rule (p_c ∝ n_c^q), its resolution (`auto` re-samples only imbalanced conditional runs, so the
built-in datasets keep their exact order), the epochs it draws, and the combinations it refuses."""

from __future__ import annotations

import pytest
import torch

from ganmodel.config import TrainParams
from ganmodel.data import shards
from ganmodel.errors import GanModelError
from ganmodel.training.batches import MemoryBatches
from ganmodel.training.job import data_loading
from ganmodel.training.loop import train
from ganmodel.training.sampling import class_shares, image_weights, imbalance, resolve_class_sampling
from ganmodel.training.state import Context

COUNTS = (400, 100, 25)  # a 16x imbalance


def _labels(counts=COUNTS) -> torch.Tensor:
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


def test_class_shares_follow_the_power_rule() -> None:
    y = _labels()
    assert torch.allclose(class_shares(y, "data"), torch.tensor([400, 100, 25], dtype=torch.float64) / 525)
    assert torch.allclose(class_shares(y, "sqrt"), torch.tensor([20, 10, 5], dtype=torch.float64) / 35)
    assert torch.allclose(class_shares(y, "balanced"), torch.full((3,), 1 / 3, dtype=torch.float64))
    # Per-image weights add up, class by class, to those shares; `data` is a plain permutation.
    w = image_weights(y, "sqrt")
    assert w is not None and image_weights(y, "data") is None
    per_class = torch.zeros(3, dtype=torch.float64).index_add_(0, y, w.double())
    assert torch.allclose(per_class, class_shares(y, "sqrt"), atol=1e-6)


def test_a_class_absent_from_the_labels_gets_no_draws() -> None:
    y = torch.tensor([0] * 10 + [2] * 5)  # class 1 has no image
    assert class_shares(y, "balanced").tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert imbalance(y) == 2.0


def test_auto_resamples_only_imbalanced_conditional_runs() -> None:
    assert resolve_class_sampling("auto", _labels(), conditional=True) == "sqrt"
    mnist5k_like = _labels((500, 450, 400))
    assert resolve_class_sampling("auto", mnist5k_like, conditional=True) == "data"
    assert resolve_class_sampling("auto", _labels(), conditional=False) == "data"
    assert resolve_class_sampling("balanced", _labels(), conditional=True) == "balanced"
    with pytest.raises(GanModelError, match="train.class_sampling: sqrt"):
        resolve_class_sampling("sqrt", None, conditional=False)


def test_a_weighted_epoch_draws_the_shares_and_plain_epochs_stay_permutations() -> None:
    y = _labels()
    images = torch.arange(y.shape[0], dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    plain = MemoryBatches(images, y, batch_size=25)
    drawn = torch.cat([b for _, b in plain.epoch(0, torch.Generator().manual_seed(5), 21)])
    again = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(5))
    assert torch.equal(drawn, y[again])  # the order every run before class_sampling drew
    weighted = MemoryBatches(images, y, batch_size=25, weights=image_weights(y, "sqrt"))
    counts = torch.zeros(3)
    for epoch in range(40):
        for _, labels in weighted.epoch(epoch, torch.Generator().manual_seed(epoch), 21):
            counts += torch.bincount(labels, minlength=3)
    assert torch.allclose(counts / counts.sum(), class_shares(y, "sqrt").float(), atol=0.01)
    one = [b for _, b in weighted.epoch(0, torch.Generator().manual_seed(9), 21)]
    two = [b for _, b in weighted.epoch(0, torch.Generator().manual_seed(9), 21)]
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))  # seeded: ranks agree


def test_params_refuse_resampling_where_it_cannot_apply() -> None:
    with pytest.raises(ValueError, match="class_sampling: sqrt .*unconditional"):
        TrainParams(preset="conv_sn", class_sampling="sqrt")
    with pytest.raises(ValueError, match="class_sampling: balanced needs train.data_loading"):
        TrainParams(preset="conv_sn_cond", class_sampling="balanced", data_loading="stream")
    assert TrainParams(preset="conv_sn", class_sampling="auto").class_sampling == "auto"


def test_a_split_that_auto_streams_refuses_explicit_resampling(tmp_path) -> None:
    y = _labels()
    shards.write_split(tmp_path, "train", torch.zeros(y.shape[0], 1, 4, 4, dtype=torch.uint8), y)
    assert data_loading("stream", tmp_path / "train", log=lambda _m: None, class_sampling="auto") == "stream"
    with pytest.raises(GanModelError, match="train.class_sampling: sqrt needs the train split in memory"):
        data_loading("stream", tmp_path / "train", log=lambda _m: None, class_sampling="sqrt")


def test_the_loop_trains_on_the_resampled_classes() -> None:
    """G is asked for the classes of the real batch, so under `balanced` every class gets a third of
    the steps; the tag says which sampling trained."""
    from ganmodel.tracking.tracker import NullTracker

    class Tags(NullTracker):
        def __init__(self) -> None:
            self.tags: dict[str, str] = {}

        def set_tags(self, tags: dict[str, str]) -> None:
            self.tags.update(tags)

    y = _labels()
    images = torch.randint(0, 256, (y.shape[0], 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    cfg = TrainParams(preset="custom", arch="mlp", conditional=True, epochs=1, batch_size=64,
                      steps_per_epoch=2, eval_every=0, z_dim=8, class_sampling="balanced")
    lines: list[str] = []
    tracker = Tags()
    train(cfg, images, Context(), tracker, labels=y, n_classes=3, log=lines.append)
    assert tracker.tags["class_sampling.resolved"] == "balanced"
    assert "class 2: 4.8% of the images, 33.3% of the draws" in lines[0]
