"""Full-state checkpoints and resume through Ray Train, end to end (integration): `dvc repro train`
in a copy of the repo (2 Ray workers on CPU, MLflow on sqlite).

- A worker failure (test-only switch: rank 0 raises once after epoch 2 of 4) is retried under
  `FailureConfig(max_failures=1)` from the last checkpoint: all epochs finish, in ONE MLflow run,
  and the shipped generator is bit-identical to an uninterrupted run of the same params.
- Only `train.keep_checkpoints` checkpoint directories remain.
- The stage killed mid-training (SIGKILL to the whole `dvc repro` process group, once a checkpoint
  is registered) and re-run resumes from that checkpoint ("resumed from epoch 2"), continues the
  same MLflow run (tagged `resumed=true`), and again ships the bit-identical generator.

The uninterrupted reference is the same loop on 2 gloo ranks without Ray (torch.multiprocessing):
cheaper than a third Ray fit, and it also shows that the Ray path computes exactly what the loop does.

Fast: the MLflow side on a sqlite store (which unfinished run a re-run continues; epochs that came
from checkpoints written under another MLflow run get their metrics copied in).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from stage_repo import (
    checkpoint_dirs,
    clone_stage_repo,
    describe,
    edit_params,
    generator_state,
    kill_group,
    sh,
    short_tmp,
    train_runs,
    wait_for,
    with_faults,
)

pytest_plugins = ["fixtures_mlflow", "fixtures_stage"]  # mlflow_store, mlflow_template_db, upstream_repo

FAIL_AT = 2
PAUSE_AT = 2
EPOCHS = 4


@pytest.fixture(scope="module")
def stage(upstream_repo: Path, mlflow_template_db: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("resume")
    ray_tmp = short_tmp("rr")
    try:
        repo, env = clone_stage_repo(upstream_repo, tmp, mlflow_template_db, ray_tmp, epochs=EPOCHS)
        yield SimpleNamespace(repo=repo, env=env, tmp=tmp, uri=env["MLFLOW_TRACKING_URI"])
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _reference_worker(rank: int, world: int, init_file: str, cfg: dict[str, Any], images: torch.Tensor,
                      out: str) -> None:
    import torch.distributed as dist

    from ganmodel.config import TrainParams
    from ganmodel.training.loop import train
    from ganmodel.training.state import Context, state_dict

    torch.set_num_threads(1)  # as in a Ray worker with 1 CPU
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        state = train(TrainParams(**cfg), images, Context(rank, world), log=lambda _m: None)
        if rank == 0:
            torch.save(state_dict(state), out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def reference(stage) -> dict[str, torch.Tensor]:
    """The generator an uninterrupted 2-worker run ships (EMA weights: ema_decay > 0)."""
    from ganmodel.config import load_params
    from ganmodel.data.prepared import load_split

    cfg = load_params(stage.repo / "params.yaml").train
    assert cfg.num_workers == 2 and cfg.ema_decay > 0 and cfg.epochs == EPOCHS
    images = load_split(stage.repo / "data" / "prepared", "train").images
    out = stage.tmp / "reference.pt"
    args = (2, str(stage.tmp / "ref-init"), cfg.model_dump(), images, str(out))
    mp.start_processes(_reference_worker, args=args, nprocs=2, join=True, start_method="spawn")
    sd = torch.load(out, weights_only=True)
    assert sd["epoch"] == EPOCHS
    return sd["ema"]


def _ray_run_dir(storage: Path) -> Path:
    runs = [p for p in storage.iterdir() if p.is_dir() and p.name.startswith("train-")]
    assert len(runs) == 1, runs
    return runs[0]


def _latest_epoch(storage: Path) -> int:
    """Epoch of the latest checkpoint Ray Train has registered (its run snapshot), 0 if none."""
    for snap in storage.glob("train-*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snap.read_text()).get("latest_checkpoint_result") or {}
        except (OSError, json.JSONDecodeError):  # being rewritten
            return 0
        return int(latest.get("metrics", {}).get("epoch", 0))
    return 0


def _assert_same_generator(path: Path, reference: dict[str, torch.Tensor]) -> None:
    shipped = generator_state(path)
    assert shipped.keys() == reference.keys()
    for k, v in reference.items():
        assert torch.equal(shipped[k], v), f"{k}: max |diff| {(shipped[k] - v).abs().max()}"


def _metric_steps(uri: str, run_id: str, key: str = "d_loss") -> list[int]:
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def _runs_for(uri: str, storage: Path) -> list[Any]:
    return [r for r in train_runs(uri) if r.data.tags.get("ray.storage_path") == str(storage)]


# --- a worker failure, retried by Ray Train ------------------------------------------------------


@pytest.fixture(scope="module")
def failed_once(stage):
    storage = stage.tmp / "ckpt-failure"
    edit_params(stage.repo, "train", storage_path=str(storage), max_failures=1)
    marker = stage.tmp / "fail.marker"
    env = with_faults(stage.env, "fail_once", FAIL_AT, marker)
    before = {r.info.run_id for r in train_runs(stage.uri)}
    proc = sh(["dvc", "repro", "train"], stage.repo, env, timeout=600)
    new = [r for r in train_runs(stage.uri) if r.info.run_id not in before]
    generator = shutil.copy2(stage.repo / "models" / "generator.pt", stage.tmp / "generator-failure.pt")
    summary = json.loads((stage.repo / "metrics" / "train.json").read_text())
    return SimpleNamespace(storage=storage, marker=marker, proc=proc, log=proc.stdout + proc.stderr, runs=new,
                           generator=Path(generator), summary=summary)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_worker_failure_is_retried_from_the_last_checkpoint(stage, failed_once, reference) -> None:
    assert failed_once.marker.is_file(), "the failure was never injected"
    log = failed_once.log
    assert f"test-only failure injected after epoch {FAIL_AT}" in log, describe(failed_once.proc)
    assert f"resumed from epoch {FAIL_AT} (step" in log, describe(failed_once.proc)
    assert f"epoch {EPOCHS}/{EPOCHS}" in log
    assert failed_once.summary["epochs"] == EPOCHS  # the history came back with the checkpoint
    # One MLflow run, not one per attempt; each epoch's metrics logged once.
    assert len(failed_once.runs) == 1, [r.info.run_id for r in failed_once.runs]
    run = failed_once.runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["ray.storage_path"] == str(failed_once.storage)
    assert _metric_steps(stage.uri, run.info.run_id) == list(range(1, EPOCHS + 1))
    # Bit-identical to the uninterrupted run.
    _assert_same_generator(failed_once.generator, reference)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_only_keep_checkpoints_remain(stage, failed_once) -> None:
    from ganmodel.config import load_params

    keep = load_params(stage.repo / "params.yaml").train.keep_checkpoints
    assert keep == 2
    dirs = checkpoint_dirs(_ray_run_dir(failed_once.storage))
    assert len(dirs) == keep, dirs  # 4 epochs, a checkpoint each, the oldest deleted
    for d in dirs:
        assert sorted(p.name for p in d.iterdir()) == ["rng_rank0.pt", "rng_rank1.pt", "state.pt"]
    epochs = sorted(torch.load(d / "state.pt", weights_only=True)["epoch"] for d in dirs)
    assert epochs == [EPOCHS - 1, EPOCHS]


# --- the whole stage killed, then re-run -----------------------------------------------------------


@pytest.fixture(scope="module")
def killed_and_rerun(stage, failed_once):  # after failed_once: both edit params.yaml
    storage = stage.tmp / "ckpt-kill"
    edit_params(stage.repo, "train", storage_path=str(storage), max_failures=0)
    marker = stage.tmp / "pause.marker"
    env = with_faults(stage.env, "pause_once", PAUSE_AT, marker)
    log = stage.tmp / "killed.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(["dvc", "repro", "train"], cwd=stage.repo, env=env, stdout=f,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        # Rank 0 sleeps after epoch PAUSE_AT's report; kill once Ray has registered that checkpoint.
        wait_for(lambda: marker.exists() and _latest_epoch(storage) >= PAUSE_AT, 300,
                 "the epoch-2 checkpoint", proc)
        killed_at = _latest_epoch(storage)
    finally:
        kill_group(proc.pid, grace=0)  # SIGKILL: dvc, the stage, and its local Ray instance
    proc.wait(timeout=30)
    assert proc.returncode < 0, f"dvc repro exited {proc.returncode} on its own:\n{log.read_text()[-4000:]}"
    during = _runs_for(stage.uri, storage)
    rerun = sh(["dvc", "repro", "train"], stage.repo, stage.env, timeout=600)
    return SimpleNamespace(storage=storage, killed_at=killed_at, killed_log=log.read_text(), during=during,
                           rerun=rerun, log=rerun.stdout + rerun.stderr, after=_runs_for(stage.uri, storage))


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_killed_stage_resumes_from_its_checkpoint(stage, killed_and_rerun, reference) -> None:
    k = killed_and_rerun.killed_at
    assert k == PAUSE_AT
    assert f"epoch {k}/{EPOCHS}" in killed_and_rerun.killed_log
    assert f"epoch {EPOCHS}/{EPOCHS}" not in killed_and_rerun.killed_log
    assert f"resumed from epoch {k} (step" in killed_and_rerun.log, describe(killed_and_rerun.rerun)
    assert f"epoch {EPOCHS}/{EPOCHS}" in killed_and_rerun.log
    assert "epoch 1/" not in killed_and_rerun.log  # epochs before the checkpoint were not redone
    summary = json.loads((stage.repo / "metrics" / "train.json").read_text())
    assert summary["epochs"] == EPOCHS
    _assert_same_generator(stage.repo / "models" / "generator.pt", reference)
    assert len(checkpoint_dirs(_ray_run_dir(killed_and_rerun.storage))) == 2


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_rerun_continues_the_same_mlflow_run(stage, killed_and_rerun) -> None:
    (killed,) = killed_and_rerun.during
    assert killed.info.status == "RUNNING"  # a SIGKILLed process cannot end its run
    assert "resumed" not in killed.data.tags
    assert len(killed_and_rerun.after) == 1, [r.info.run_id for r in killed_and_rerun.after]
    run = killed_and_rerun.after[0]
    assert run.info.run_id == killed.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed"] == "true"
    assert run.data.tags["resumed.from_status"] == "RUNNING"
    assert run.data.tags["ray.run_name"] == killed.data.tags["ray.run_name"]
    assert f"continuing MLflow run {run.info.run_id}" in killed_and_rerun.log
    # Epochs 1-2 logged before the kill, 3-4 after the resume: each once.
    assert _metric_steps(stage.uri, run.info.run_id) == list(range(1, EPOCHS + 1))
    # It moves under the re-run's execution (the killed one was closed) and remembers the first.
    from mlflow.tracking import MlflowClient

    first, now = killed.data.tags["mlflow.parentRunId"], run.data.tags["mlflow.parentRunId"]
    assert now != first and run.data.tags["resumed.from_parent"] == first
    client = MlflowClient(stage.uri)
    assert client.get_run(first).info.status == "KILLED"
    parent = client.get_run(now)
    assert parent.data.tags["pipeline.role"] == "execution" and parent.info.status == "FINISHED"
    link = json.loads((stage.repo / "runs" / "train.json").read_text())
    assert link["run_id"] == run.info.run_id
    # The stage finished, so its outputs are recorded and up to date.
    status = sh(["dvc", "status", "train"], stage.repo, stage.env)
    assert "up to date" in status.stdout, status.stdout


# --- a new classifier: the same params, but not the same run ---------------------------------------


@pytest.fixture(scope="module")
def new_classifier(stage, killed_and_rerun):  # after killed_and_rerun: its finished run is the candidate
    edit_params(stage.repo, "classifier", seed=1)  # DVC re-runs classifier, then train
    before = {r.info.run_id for r in train_runs(stage.uri)}
    proc = sh(["dvc", "repro", "train"], stage.repo, stage.env, timeout=600)
    runs = [r for r in train_runs(stage.uri) if r.info.run_id not in before]
    return SimpleNamespace(proc=proc, log=proc.stdout + proc.stderr, runs=runs)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_new_classifier_makes_train_start_fresh(stage, killed_and_rerun, new_classifier) -> None:
    """Same train params, data and code, but DVC tracks the classifier (the quick FID's features):
    the Ray run is another one, trained from epoch 1, not the finished run's checkpoint reused."""
    log = new_classifier.log
    assert "Running stage 'classifier'" in log and "Running stage 'train'" in log, log[-3000:]
    assert "resumed from epoch" not in log and "came from existing checkpoints" not in log, log[-3000:]
    assert "epoch 1/" in log and f"epoch {EPOCHS}/{EPOCHS}" in log
    (run,) = new_classifier.runs  # a new MLflow run, not the finished one continued
    old = killed_and_rerun.after[0]
    assert run.data.tags["ray.run_name"] != old.data.tags["ray.run_name"]
    assert run.data.tags["classifier.hash"] != old.data.tags["classifier.hash"]
    assert "resumed" not in run.data.tags
    ray_runs = sorted(p.name for p in killed_and_rerun.storage.iterdir() if p.name.startswith("train-"))
    assert ray_runs == sorted([old.data.tags["ray.run_name"], run.data.tags["ray.run_name"]])


# --- the MLflow side, fast -------------------------------------------------------------------------


def test_find_unfinished_run(mlflow_store) -> None:
    from mlflow.tracking import MlflowClient

    from ganmodel.tracking.runs import find_unfinished_run

    client = MlflowClient(mlflow_store.uri)
    exp = client.create_experiment("lookup")
    ray = {"ray.run_name": "train-abc", "ray.storage_path": "/ckpt"}

    def make(status: str, start: int, stage: str = "train", **tags: str) -> str:
        run = client.create_run(exp, start_time=start, tags={"pipeline.stage": stage, **ray, **tags})
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    make("FINISHED", 5)  # finished runs are never reopened
    killed = make("RUNNING", 1)  # what a SIGKILLed stage leaves
    assert find_unfinished_run("lookup", "train", ray).info.run_id == killed
    failed = make("FAILED", 2)
    assert find_unfinished_run("lookup", "train", ray).info.run_id == failed  # the latest
    client.delete_run(failed)
    assert find_unfinished_run("lookup", "train", ray).info.run_id == killed
    make("RUNNING", 9, stage="evaluate")
    make("RUNNING", 9, **{"ray.storage_path": "/elsewhere"})  # another Ray run: not this one
    assert find_unfinished_run("lookup", "train", ray).info.run_id == killed
    assert find_unfinished_run("lookup", "train", {**ray, "ray.run_name": "train-other"}) is None
    assert find_unfinished_run("no-such-experiment", "train", ray) is None
    assert find_unfinished_run("lookup", "train", {**ray, "ray.storage_path": "/it's"}) is None


def test_backfill_history(mlflow_store) -> None:
    from mlflow.tracking import MlflowClient

    from ganmodel.tracking.runs import BACKFILLED_TAG, backfill_history

    client = MlflowClient(mlflow_store.uri)
    run_id = client.create_run(mlflow_store.experiment_id).info.run_id
    for epoch in (1, 2):  # logged live by rank 0
        client.log_metric(run_id, "d_loss", 1.0 / epoch, step=epoch)
    history = [{"epoch": e, "d_loss": 1.0 / e, "g_loss": 0.5, "images_per_sec": 100.0} for e in (1, 2, 3, 4)]
    assert backfill_history(run_id, history, mlflow_store.uri) == [3, 4]
    assert _metric_steps(mlflow_store.uri, run_id) == [1, 2, 3, 4]
    assert _metric_steps(mlflow_store.uri, run_id, "g_loss") == [3, 4]
    assert client.get_run(run_id).data.tags[BACKFILLED_TAG] == "3,4"
    assert backfill_history(run_id, history, mlflow_store.uri) == []  # idempotent
