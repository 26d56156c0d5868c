"""Helpers and fixtures for integration tests that run pipeline stages in a throwaway copy of the
repo (real git, DVC, Ray and an MLflow sqlite store under a temp dir). They stop what they started
by process group: never `ray stop`, which stops every Ray process on the machine, other tests'
included.

The session fixture `upstream_repo` (a copied repo with `prepare` and a 1-epoch `classifier`
reproduced, cloned by each module with `clone_stage_repo`) lives in `fixtures_stage`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# data/raw/README.md: prepare's default raw_dir, a DVC dependency, exists in every clone.
SOURCES = ("ganmodel", "pipelines", "dvc.yaml", "params.yaml", "pyproject.toml", "data/raw/README.md")
BIN = Path(sys.executable).parent

# Tiny and fast, on 2 CPU workers; the classifier is only an upstream dependency here.
TINY_TRAIN = dict(preset="custom", arch="mlp", loss="bce", epochs=4, steps_per_epoch=2, batch_size=64,
                  num_workers=2, use_gpu=False, precision="fp32", ema_decay=0.5, eval_every=0,
                  ray_address=None, checkpoint_every=1, keep_checkpoints=2, max_failures=0)
TINY_CLASSIFIER = dict(epochs=1, min_accuracy=0.0)


def copy_repo(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for name in SOURCES:
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)


def stage_env(repo: Path, tmp: Path, ray_tmp: str, **extra: str) -> dict[str, str]:
    """Environment for `dvc`/stage processes: the venv first on PATH, the copied sources on
    PYTHONPATH, a private MLflow store, no telemetry; no RAY_/MLFLOW_/DVC_ variables leak in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "MLFLOW_", "DVC_", "GANMODEL_"))}
    env.update(
        PATH=str(BIN) + os.pathsep + env.get("PATH", ""),
        PYTHONPATH=str(repo),
        MLFLOW_TRACKING_URI="sqlite:///" + str(tmp / "mlflow" / "mlflow.db"),
        MLFLOW_DISABLE_TELEMETRY="true",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site"),
        RAY_TMPDIR=ray_tmp,
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONWARNINGS="ignore",
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
    )
    env.update(extra)
    return env


def short_tmp(prefix: str) -> str:
    """A short directory under /tmp: Ray's unix socket paths are length-limited."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 120,
       check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in its own session; on timeout the whole process group is killed."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} timed out after {timeout}s\n--- stdout\n{out[-6000:]}\n"
                             f"--- stderr\n{err[-6000:]}") from None
    finally:
        # A stage's local Ray instance shares the stage's process group: reap any straggler.
        kill_group(proc.pid, grace=0)
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check:
        assert proc.returncode == 0, describe(result)
    return result


def describe(proc: subprocess.CompletedProcess) -> str:
    return (f"{' '.join(map(str, proc.args))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-8000:]}\n"
            f"--- stderr\n{proc.stderr[-8000:]}")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group `pgid` (a session this test started), then SIGKILL it."""
    if not group_alive(pgid):
        return
    if grace > 0:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.1)
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.1)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             proc: subprocess.Popen | None = None, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited {proc.returncode} while waiting for {what}\n"
                                 f"--- stdout\n{out[-6000:]}\n--- stderr\n{err[-6000:]}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


TESTS_DIR = Path(__file__).resolve().parent


def with_faults(env: dict[str, str], hook: str, at_epoch: int, marker: Path) -> dict[str, str]:
    """`env` with a `tests/faults.py` hook installed in the train workers (see that module)."""
    return {**env, "PYTHONPATH": env["PYTHONPATH"] + os.pathsep + str(TESTS_DIR),
            "GANMODEL_EPOCH_HOOKS": f"faults:{hook}", "GANMODEL_FAULT_AT_EPOCH": str(at_epoch),
            "GANMODEL_FAULT_MARKER": str(marker)}


def edit_params(repo: Path, section: str, **values: Any) -> dict[str, Any]:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def fresh_mlflow_store(tmp: Path, template_db: Path) -> None:
    """A private, already migrated sqlite store at `tmp/mlflow/mlflow.db` (what `stage_env` uses)."""
    (tmp / "mlflow").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db, tmp / "mlflow" / "mlflow.db")


def clone_stage_repo(upstream: Path, tmp: Path, template_db: Path, ray_tmp: str,
                     **train: Any) -> tuple[Path, dict[str, str]]:
    """A private copy of `upstream_repo` under `tmp` with its own empty MLflow store and these
    train params. Returns (repo, env)."""
    repo = tmp / "repo"
    shutil.copytree(upstream, repo, symlinks=True)
    fresh_mlflow_store(tmp, template_db)
    edit_params(repo, "train", **train)
    return repo, stage_env(repo, tmp, ray_tmp)


def train_runs(uri: str, experiment: str = "ganmodel") -> list[Any]:
    """Every MLflow run tagged as a train stage run, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], filter_string="tags.`pipeline.stage` = 'train'",
                              order_by=["attributes.start_time ASC"])


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """The Ray Train checkpoint directories of one run (`storage_path/<run name>`)."""
    return sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())


def generator_state(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
