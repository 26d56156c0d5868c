"""The folder dataset through real DVC: `data.raw_dir` is a dependency of `prepare` (templated from
params.yaml), so a changed folder re-runs it and an unchanged one does not; the prepare run logs
the folder's content digest as its `source` dataset input; a bad file stops the stage cleanly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from stage_repo import copy_repo, edit_params, fresh_mlflow_store, sh, stage_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
pytest_plugins = ["fixtures_mlflow"]  # mlflow_template_db


def _images(folder: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for k in range(n):
        path = folder / ("cats", "dogs")[k % 2] / f"{k:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(path)


def test_a_changed_folder_re_runs_prepare(repo_root: Path, tmp_path: Path, mlflow_template_db: Path) -> None:
    repo, images = tmp_path / "repo", tmp_path / "my images"  # outside the repo, with a space
    copy_repo(repo_root, repo)
    _images(images, 24, seed=0)
    edit_params(repo, "data", dataset="folder", raw_dir=str(images), resolution=16)
    fresh_mlflow_store(tmp_path, mlflow_template_db)
    env = stage_env(repo, tmp_path, str(tmp_path))
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    shutil.copy2(repo_root / ".dvc" / "config", repo / ".dvc" / "config")

    first = sh(["dvc", "repro", "prepare"], repo, env, timeout=300)
    assert "Running stage 'prepare'" in first.stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["prepare"]
    assert str(images) in [d["path"] for d in lock["deps"]]
    meta = json.loads((repo / "data" / "prepared" / "meta.json").read_text())
    assert meta["image_shape"] == [3, 16, 16] and meta["source"]["files"]["found"] == 24
    assert "up to date" in sh(["dvc", "status", "prepare"], repo, env).stdout

    _images(images / "birds", 10, seed=1)  # a third class, nested one level deeper
    status = sh(["dvc", "status", "prepare"], repo, env).stdout
    assert "changed deps" in status and str(images) in status
    second = sh(["dvc", "repro", "prepare"], repo, env, timeout=300)
    assert "Running stage 'prepare'" in second.stdout
    meta2 = json.loads((repo / "data" / "prepared" / "meta.json").read_text())
    assert meta2["classes"] == ["birds", "cats", "dogs"]
    assert meta2["source"]["digest"] != meta["source"]["digest"]
    metrics = json.loads((repo / "metrics" / "prepare.json").read_text())
    assert metrics["files"]["found"] == 34 and metrics["skipped_files"] == []

    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run_id = json.loads((repo / "runs" / "prepare.json").read_text())["run_id"]
    inputs = {[t.value for t in i.tags if t.key == "mlflow.data.context"][0]: i.dataset
              for i in client.get_run(run_id).inputs.dataset_inputs}
    assert inputs["source"].digest == meta2["source"]["digest"][:36] and inputs["source"].name == "my images"
    assert inputs["prepared"].digest == meta2["data_hash"][:36]

    # A bad file: one error line naming it, a non-zero exit, no outputs (DVC clears a stage's outputs
    # before running it; the stage writes none of its own unless it succeeds).
    (images / "cats" / "zz.png").write_bytes(b"")
    bad = sh(["dvc", "repro", "prepare"], repo, env, timeout=300, check=False)
    assert bad.returncode != 0
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: {images / 'cats' / 'zz.png'}: empty file (0 bytes); set data.on_bad_file: "
                      "skip to leave bad files out (they are listed in metrics/prepare.json)"], bad.stderr
    assert not (repo / "data" / "prepared").exists() and not (repo / "metrics" / "prepare.json").exists()
