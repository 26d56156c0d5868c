"""The train stage's inputs reach Ray Train workers by value, and bad input reaches the user as
one line, not Ray's traceback (integration: a real local Ray instance, one worker)."""

from __future__ import annotations

import shutil

import pytest
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

    missing = tmp_path / "nope" / "train.pt"
    with pytest.raises(GanModelError) as info:
        run_ray(_cfg(tmp_path), str(missing), "train-missing")
    assert str(info.value) == f"{missing}: input file of the train stage not found"


def test_worker_side_bad_input_is_one_line_and_read_from_the_shipped_copy(ray_session, tmp_path):
    from ganmodel.training.job import run_ray

    bad = tmp_path / "prepared" / "train.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a torch file")
    with pytest.raises(GanModelError) as info:
        run_ray(_cfg(tmp_path), str(bad), "train-bad")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("train worker rank 0: ")
    assert "train.pt: not a prepared split file" in msg
    # The worker opened its own copy of the bytes (Ray's object store), not the driver's path:
    # on a multi-node cluster that path does not exist on the workers' nodes.
    assert "ganmodel-inputs-" in msg and str(bad.parent) not in msg, msg
