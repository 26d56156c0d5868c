"""Stages under `train.data_loading: stream`: the classifier, evaluate and the quick FID read the
prepared shards in bounded batches (or a few rows by index), never a whole split, and agree with
the in-memory path: the same figures up to float summation order, the same scores of one model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganmodel.artifacts import save_classifier
from ganmodel.classifier.choice import select_feature_network
from ganmodel.classifier.training import split_confusion, train_classifier
from ganmodel.config import ClassifierParams, EvaluateParams
from ganmodel.data.prepared import SPLITS, load_split, open_split
from ganmodel.data.shards import ShardReader, write_split
from ganmodel.evaluation import reference
from ganmodel.evaluation.ladder import calibration_ladder
from ganmodel.evaluation.memorisation import kmeans, nearest_distances
from ganmodel.evaluation.prdc import nearest_neighbours
from ganmodel.evaluation.protocol import evaluate, heldout
from ganmodel.evaluation.quick import QuickFID
from ganmodel.evaluation.reference import (
    FeatureFile,
    kmeans_streamed,
    streamed_nearest_distances,
    streamed_neighbours,
)
from ganmodel.evaluation.sources import HeldOut, open_splits
from ganmodel.networks import build_generator
from ganmodel.networks.classifier import EvalClassifier

SIZES = {"train": 600, "val": 150, "test": 150}
# Several shards and row groups, none aligned with a batch: every boundary is crossed.
SHARD_BYTES, GROUP_BYTES = 784 * 250, 784 * 64
CLASSES = [str(c) for c in range(10)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, mnist5k) -> Path:
    d = tmp_path_factory.mktemp("prepared")
    for name, n in SIZES.items():
        s = mnist5k[name]
        write_split(d, name, s.images[:n].clone(), s.labels[:n].clone(), SHARD_BYTES, GROUP_BYTES)
    return d


@pytest.fixture(scope="module")
def memory(prepared) -> dict:
    return {s: load_split(prepared, s) for s in SPLITS}


@pytest.fixture
def readers(prepared, monkeypatch) -> dict[str, ShardReader]:
    """The splits' readers, with reading a split whole (`read`, hence `load_split`) refused."""
    def refuse(self):
        raise AssertionError(f"split {self.name} read whole under stream")

    monkeypatch.setattr(ShardReader, "read", refuse)
    return {s: open_split(prepared, s) for s in SPLITS}


@pytest.fixture(scope="module")
def classifier() -> EvalClassifier:
    torch.manual_seed(0)
    return EvalClassifier(feature_dim=16).eval()


def test_open_splits_follows_the_loading_rule(prepared, readers):
    mode, splits = open_splits(prepared, "stream")
    assert mode == "stream" and all(isinstance(s, ShardReader) for s in splits.values())
    held = heldout(splits["val"], splits["test"])
    assert isinstance(held, HeldOut) and len(held) == 300


def test_held_out_reader_is_the_concatenation(memory, prepared):
    held_mem = heldout(memory["val"], memory["test"])
    held = heldout(open_split(prepared, "val"), open_split(prepared, "test"))
    batches = list(held.iter_batches(64))
    assert [len(x) for x, _ in batches] == [64] * 4 + [44]  # across the val/test boundary at 150
    assert torch.equal(torch.cat([x for x, _ in batches]), held_mem.images)
    assert torch.equal(torch.cat([y for _, y in batches]), held_mem.labels)
    idx = torch.tensor([299, 0, 150, 149, 7, 150])
    assert torch.equal(held.take(idx)[0], held_mem.images[idx])
    assert torch.equal(held.labels(), held_mem.labels)


def test_streamed_distances_neighbours_and_kmeans_match_the_in_memory_ones():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 8, generator=g, dtype=torch.float64) * 4
    noise = torch.randn(1000, 8, generator=g, dtype=torch.float64)
    x = centres[torch.randint(6, (1000,), generator=g)] + noise
    q = torch.randn(50, 8, generator=g, dtype=torch.float64) * 3
    f = FeatureFile(8, chunk_rows=97)
    try:
        for part in x.split(300):
            f.append(part)
        assert torch.equal(streamed_nearest_distances(q, f), nearest_distances(q, x))  # exact: running minima
        assert torch.equal(streamed_neighbours(q, f, 5), nearest_neighbours(q, x, k=5))
        torch.testing.assert_close(kmeans_streamed(f, 7, seed=3), kmeans(x, 7, seed=3), rtol=1e-9, atol=1e-12)
    finally:
        f.close()


def test_streamed_evaluation_agrees_with_memory(memory, readers, classifier, monkeypatch):
    monkeypatch.setattr(reference, "FEATURE_CHUNK", 128)  # train features read back in 5 chunks
    torch.manual_seed(0)
    g = build_generator("mlp", 100, n_classes=10)  # conditional: CAS and its floor run too
    # N = 300: three k-means cells; B is all of val+test.
    cfg = EvaluateParams(n_samples=300, kid_subsets=5, kid_subset_size=100, grid_size=10, nn_rows=3,
                         cas_epochs=1)
    mem = evaluate(g, classifier, memory["train"], heldout(memory["val"], memory["test"]), cfg, CLASSES)
    st = evaluate(g, classifier, readers["train"], heldout(readers["val"], readers["test"]), cfg, CLASSES)
    assert st.metrics.keys() == mem.metrics.keys() and "cas_floor" in st.metrics
    assert st.metrics["copying_cells"] == mem.metrics["copying_cells"]
    for k, v in mem.metrics.items():
        if k != "eval_time_s":
            assert st.metrics[k] == pytest.approx(v, rel=1e-5, abs=1e-9), k
    assert torch.equal(st.grid, mem.grid) and torch.equal(st.nn_sheet, mem.nn_sheet)
    assert st.ladder_position == mem.ladder_position and st.histogram == mem.histogram


def test_quick_fid_from_a_reader_agrees_with_the_tensor(memory, readers, tmp_path):
    torch.manual_seed(0)
    save_classifier(EvalClassifier(feature_dim=16), {"test": True}, tmp_path / "clf.pt")
    train = memory["train"]
    mem = QuickFID(tmp_path / "clf.pt", train.images, n_samples=200, real_labels=train.labels)
    st = QuickFID(tmp_path / "clf.pt", readers["train"], n_samples=200)  # labels from the reader
    for g in (build_generator("mlp", 100, n_classes=10), build_generator("mlp", 100)):
        fid = st(g)["fid"]
        assert math.isfinite(fid) and fid == pytest.approx(mem(g)["fid"], rel=1e-6)


def test_streamed_classifier_learns_and_scores_as_in_memory(memory, readers):
    cfg = ClassifierParams(epochs=4, feature_dim=32, batch_size=32, seed=0)
    quiet = lambda _m: None  # noqa: E731
    mem = train_classifier(cfg, memory["train"], memory["val"], memory["test"], 10, log=quiet)
    st = train_classifier(cfg, readers["train"], readers["val"], readers["test"], 10, log=quiet)
    # Another shuffle, so other weights; as good a classifier.
    assert st.test_accuracy > 0.7 and abs(st.test_accuracy - mem.test_accuracy) < 0.15  # 0.87, 0.83
    assert len(st.history) == 4 and all(math.isfinite(h["train_loss"]) for h in st.history)
    # One model scores the same streamed as in memory: the confusion matrix, and the ladder.
    assert torch.equal(split_confusion(mem.model, readers["test"], 10), mem.confusion)
    ladder_mem = calibration_ladder(mem.model, memory["train"].images, memory["val"].images, 100, 0)
    assert calibration_ladder(mem.model, readers["train"], readers["val"], 100, 0) == ladder_mem


def test_streamed_feature_network_selection_trains_the_rotation_net_too(readers):
    cfg = ClassifierParams(epochs=1, selfsup_epochs=1, feature_dim=16, batch_size=64, seed=0,
                           feature_network="both")
    sel = select_feature_network(cfg, readers["train"], readers["val"], readers["test"], 10, True,
                                 log=lambda _m: None)
    assert set(sel.ladders) == {"labelled", "label_free", "both"} and sel.choice.kind == "both"
    assert all(math.isfinite(v) for ladder in sel.ladders.values() for v in ladder.values())
    assert 0 <= sel.rotation.test_accuracy <= 1 and int(sel.rotation.confusion.sum()) == 4 * SIZES["test"]
