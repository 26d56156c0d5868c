"""`train.data_loading: stream`: what holds, tested.

- The prepared shards: any sharding gives the same content hash, and reads back the same bytes.
- `ShardBatches` (streaming without Ray): every image once per epoch, ranks' slices disjoint, the
  same batches for the same (seed, epoch), so a resumed stream run equals an uninterrupted one.
- The Ray Data path (`ray_data.train_dataset` + `RayDataBatches`, a real local Ray instance, 2
  workers): the ranks read disjoint rows that cover the split, each epoch, with their labels; and
  the train stage's own `run_ray` trains with `stream`. The two-node version is in test_cluster.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from stream_probe import N, check_disjoint_full_epochs, image_ids, run_probe, write_id_split

from ganmodel.config import TrainParams
from ganmodel.data import shards
from ganmodel.data.prepared import Split, data_hash, hash_prepared, open_split, save_prepared
from ganmodel.data.stream import resolve_loading, shuffled_batches
from ganmodel.training.batches import ShardBatches
from ganmodel.training.loop import train
from ganmodel.training.state import Context, state_dict


def test_sharding_changes_neither_bytes_nor_hash(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    sizes = (("train", 300), ("val", 40), ("test", 40))
    splits = {s: Split(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                       torch.randint(0, 5, (n,), generator=g)) for s, n in sizes}
    digest = data_hash(splits)
    save_prepared(tmp_path / "one", splits, {"image_shape": [3, 8, 8]})
    for name, s in splits.items():  # many small shards and row groups
        shards.write_split(tmp_path / "many", name, s.images, s.labels, shard_bytes=192 * 7,
                           row_group_bytes=192 * 3)
    assert len(shards.shard_files(tmp_path / "many", "train")) == 43
    for d in ("one", "many"):
        assert hash_prepared(tmp_path / d) == digest
        back = open_split(tmp_path / d, "train").read()
        assert torch.equal(back[0], splits["train"].images) and torch.equal(back[1], splits["train"].labels)


def test_auto_streams_only_above_the_threshold() -> None:
    from ganmodel.data.stream import AUTO_STREAM_BYTES

    assert resolve_loading("auto", 4000 * 784) == "memory"  # mnist5k
    assert resolve_loading("auto", AUTO_STREAM_BYTES + 1) == "stream"
    assert resolve_loading("memory", 10 * AUTO_STREAM_BYTES) == "memory"
    assert resolve_loading("stream", 1) == "stream"


def test_shard_batches_cover_each_epoch_once_and_split_ranks(tmp_path: Path) -> None:
    reader = open_split(write_id_split(tmp_path), "train")
    batch, world, steps = 64, 4, N // 64
    per_rank = [[image_ids(x) for x, _ in ShardBatches(reader, batch, seed=3, rank=r, world_size=world,
                                                       shuffle_rows=200).epoch(0, torch.Generator(), steps)]
                for r in range(world)]
    seen = [i for r in per_rank for b in r for i in b]
    assert len(seen) == steps * batch == len(set(seen))  # no image twice; only the drop_last rest unseen
    assert all(len(b) == batch // world for r in per_rank for b in r)
    again = [image_ids(x) for x, _ in shuffled_batches(reader, batch, 3, 0, 200)]
    assert [sum((per_rank[r][s] for r in range(world)), []) for s in range(steps)] == again[:steps]
    other = [image_ids(x) for x, _ in shuffled_batches(reader, batch, 3, 1, 200)]
    assert other != again and sorted(sum(other, [])) != list(range(steps * batch))  # reshuffled per epoch


def _stream_train(reader, epochs: int, resume=None):
    cfg = TrainParams(preset="custom", arch="mlp", epochs=epochs, batch_size=64, steps_per_epoch=4,
                      eval_every=0, z_dim=8)
    return train(cfg, ShardBatches(reader, 64, cfg.seed, shuffle_rows=128), Context(), resume=resume,
                 log=lambda _m: None)


def test_a_resumed_stream_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """Stream semantics without Ray: epoch e reads the (seed, e) order whatever came before, so a
    run resumed from its epoch-1 checkpoint continues exactly as the uninterrupted run."""
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (600, 1, 28, 28), dtype=torch.uint8, generator=g)
    shards.write_split(tmp_path, "train", images, torch.zeros(600, dtype=torch.long), shard_bytes=784 * 100,
                       row_group_bytes=784 * 50)
    reader = open_split(tmp_path, "train")
    straight = state_dict(_stream_train(reader, 2))
    first = state_dict(_stream_train(reader, 1))
    resumed = state_dict(_stream_train(reader, 2, resume=first))
    for key in ("g", "d"):
        for name, t in straight[key].items():
            assert torch.equal(t, resumed[key][name]), (key, name)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_ray_data_ranks_read_disjoint_rows_covering_each_epoch(tmp_path: Path) -> None:
    prepared = write_id_split(tmp_path / "prepared")
    ranks = run_probe("local", prepared, tmp_path / "seen.json", 2, 64)
    check_disjoint_full_epochs(ranks, N, 64)
    assert ranks[0]["epochs"][0]["ids"] != ranks[0]["epochs"][1]["ids"]  # a new order each epoch


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_train_stage_streams_with_ray_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`job.run_ray`, the train stage's own path, with `stream`: 2 DDP workers read their Ray Data
    shards (the split is not shipped), a conditional model gets its labels from the rows, and rank 0
    computes the in-training FID from the shards."""
    import math

    import ray
    from stage_repo import short_tmp

    from ganmodel.artifacts import save_classifier
    from ganmodel.networks.classifier import EvalClassifier
    from ganmodel.training.job import run_ray

    monkeypatch.setenv("RAY_TMPDIR", short_tmp("rs"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (400, 1, 28, 28), dtype=torch.uint8, generator=g)
    shards.write_split(tmp_path / "prepared", "train", images, torch.arange(400) % 4, shard_bytes=784 * 64)
    torch.manual_seed(0)
    save_classifier(EvalClassifier(), {"test": True}, tmp_path / "clf.pt")
    cfg = TrainParams(preset="custom", arch="mlp", conditional=True, epochs=2, steps_per_epoch=3,
                      batch_size=64, num_workers=2, eval_every=1, eval_samples=50, data_loading="stream",
                      storage_path=str(tmp_path / "ckpt"))
    try:
        out = run_ray(cfg, str(tmp_path / "prepared" / "train"), "stream-stage",
                      classifier=str(tmp_path / "clf.pt"), n_classes=4)
    finally:
        ray.shutdown()
    assert "data loading: stream (400 images in 7 shards; train.data_loading)" in capsys.readouterr().out
    assert [h["epoch"] for h in out.history] == [1, 2]
    assert all(math.isfinite(h["fid"]) and math.isfinite(h["d_loss"]) for h in out.history)
    assert out.history[-1]["worker_peak_rss_mb"] > 0


@pytest.mark.parametrize("batch", [1, 7, 13, 50, 500])
def test_batches_in_order_cross_row_groups_shards_and_splits(tmp_path: Path, batch: int) -> None:
    """`ShardReader.iter_batches` and `HeldOut` (val then test) give the rows in stored order, in
    batches of exactly `batch` (the last shorter), across row groups, shards and the two splits."""
    from ganmodel.evaluation.sources import HeldOut

    g = torch.Generator().manual_seed(2)
    for name, n in (("val", 137), ("test", 91)):
        x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
        shards.write_split(tmp_path, name, x, torch.arange(n), shard_bytes=16 * 40, row_group_bytes=16 * 13)
    val, test = open_split(tmp_path, "val"), open_split(tmp_path, "test")
    (vx, vy), (tx, ty) = val.read(), test.read()
    held = HeldOut(val, test)
    for batches, x, y in ((list(val.iter_batches(batch)), vx, vy),
                          (list(held.iter_batches(batch)), torch.cat([vx, tx]), torch.cat([vy, ty]))):
        assert [len(b) for b, _ in batches] == [min(batch, len(x) - i) for i in range(0, len(x), batch)]
        assert torch.equal(torch.cat([b for b, _ in batches]), x)
        assert torch.equal(torch.cat([c for _, c in batches]), y)
