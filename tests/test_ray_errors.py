"""Bad input found on a Ray Train worker reaches the user as one line, not Ray's traceback
(integration: a real local Ray instance, one worker)."""

from __future__ import annotations

import shutil

import pytest
from stage_repo import short_tmp

from ganmodel.config import TrainParams
from ganmodel.errors import GanModelError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_worker_side_bad_input_is_a_one_line_error(tmp_path, monkeypatch):
    import ray

    from ganmodel.training.job import run_ray

    ray_tmp = short_tmp("re")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = TrainParams(epochs=1, steps_per_epoch=1, batch_size=64, num_workers=1,
                      storage_path=str(tmp_path / "ckpt"), max_failures=0)
    missing = tmp_path / "nope" / "train.pt"  # the driver passes the path; the worker opens it
    try:
        with pytest.raises(GanModelError) as info:
            run_ray(cfg, str(missing), None, None, "data-hash")
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert str(info.value) == (f"train worker rank 0: {missing}: prepared split not found; "
                               "run the prepare stage first")
