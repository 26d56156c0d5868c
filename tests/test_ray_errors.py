"""The train stage's inputs reach Ray Train workers by value, and bad input reaches the user as
one line, not Ray's traceback (integration: a real local Ray instance, one worker)."""

from __future__ import annotations

import shutil

import pytest
import torch
from stage_repo import short_tmp

from ganmodel.config import TrainParams
from ganmodel.errors import GanModelError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def ray_session():
    import ray

    mp = pytest.MonkeyPatch()
    ray_tmp = short_tmp("re")
    mp.setenv("RAY_TMPDIR", ray_tmp)
    mp.delenv("RAY_ADDRESS", raising=False)
    try:
        yield
    finally:
        ray.shutdown()
        mp.undo()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _cfg(tmp_path) -> TrainParams:
    return TrainParams(preset="custom", epochs=1, steps_per_epoch=1, batch_size=64, num_workers=1,
                       storage_path=str(tmp_path / "ckpt"), max_failures=0)


def test_missing_input_is_refused_by_the_driver(ray_session, tmp_path):
    from ganmodel.training.job import run_ray

    missing = tmp_path / "nope" / "train"
    with pytest.raises(GanModelError) as info:
        run_ray(_cfg(tmp_path), str(missing), "train-missing")
    assert str(info.value).startswith(f"{missing}: prepared split not found")


def test_worker_side_bad_input_is_one_line_and_read_from_the_shipped_copy(ray_session, tmp_path):
    from ganmodel.data.shards import write_split
    from ganmodel.training.job import run_ray

    # A shard whose footer (all the driver reads to size the split) is sound but whose pixels are
    # not: only the worker that decodes it can tell.
    images = torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8)
    (shard,) = write_split(tmp_path / "prepared", "train", images, torch.zeros(200, dtype=torch.long))
    raw = bytearray(shard.read_bytes())
    raw[100:4000] = bytes(3900)
    shard.write_bytes(bytes(raw))
    bad = shard.parent
    with pytest.raises(GanModelError) as info:
        run_ray(_cfg(tmp_path), str(bad), "train-bad")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("train worker rank 0: ")
    assert "part-00000.parquet: unreadable shard" in msg
    # The worker opened its own copy of the bytes (Ray's object store), not the driver's path:
    # on a multi-node cluster that path does not exist on the workers' nodes.
    assert "ganmodel-inputs-" in msg and str(bad.parent) not in msg, msg
