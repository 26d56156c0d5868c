"""`ganmodel sweep` end to end (integration): a real local Ray instance, MLflow on sqlite and real
DVC, in a copy of the repo whose prepare and classifier stages are reproduced (`upstream_repo`).

One tiny sweep (4 trials of 2 epochs, 5 steps each, ASHA with a grace period of 1 epoch and a
reduction factor of 2, 2 concurrent trials) serves every assertion. Its space is one learning rate,
`lr_d` in {2e-3, 1e-7} over `lr_g` = 2e-3; with seed 11 the sampled trials are good, good, bad,
good. A discriminator that does not learn lets G drift (quick FID ~630 after one epoch against ~250
for the good ones), and trial 2 reaches the rung only after good trials have, so ASHA stops it:
deterministically, whatever the order in which trials 0 and 1 report.

The sweep is interrupted: trial 0 stalls after its first epoch (test hook `faults:pause_first_trial`)
while trials 1-3 end; then SIGTERM goes to the `ganmodel sweep` process, which saves Tune's state
and exits 130; `ganmodel sweep --resume` continues trial 0 from its epoch-1 checkpoint and does not
run the others again. Then: MLflow holds one sweep parent with 4 children; best.yaml validates
through the params model; the printed `dvc exp run -S ...` line succeeds; `--apply`'s queueing puts
the same experiment in DVC's queue.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from stage_repo import (
    clone_stage_repo,
    describe,
    edit_params,
    kill_group,
    sh,
    short_tmp,
    wait_for,
    with_faults,
)

pytest_plugins = ["fixtures_mlflow", "fixtures_stage"]  # mlflow_template_db, upstream_repo

SWEEP = {"name": "tiny", "space": {"lr_d": {"choice": [2.0e-3, 1.0e-7]}}, "num_samples": 4,
         "scheduler": "asha", "grace_period": 1, "reduction_factor": 2, "metric": "fid",
         "max_concurrent_trials": 2, "epochs": 2, "workers_per_trial": 1, "cpus_per_trial": 1,
         "use_gpu": False, "max_failures": 0, "seed": 11}
GOOD, BAD = 2.0e-3, 1.0e-7


def _runs(uri: str, filter_string: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ganmodel")
    return client.search_runs([exp.experiment_id], filter_string=filter_string) if exp else []


@pytest.fixture(scope="module")
def swept(upstream_repo: Path, mlflow_template_db: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sweep")
    ray_tmp = short_tmp("rs")
    # Pipeline params for the dvc exp run below: one 1-worker epoch; the sweep's trials train 2.
    repo, env = clone_stage_repo(upstream_repo, tmp, mlflow_template_db, ray_tmp, lr_g=GOOD, epochs=1,
                                 num_workers=1, steps_per_epoch=5, eval_samples=100,
                                 storage_path=str(tmp / "ckpt"))
    # The `dvc exp run` test's evaluate stage: small N (what is tested is that the line runs).
    edit_params(repo, "evaluate", n_samples=200, batch_size=100, kid_subsets=10, kid_subset_size=100,
                grid_size=20, nn_rows=4)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["sweep"] = SWEEP
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    marker = tmp / "pause.marker"
    fenv = with_faults(env, "pause_first_trial", 1, marker)
    cmd = [sys.executable, "-m", "ganmodel", "sweep"]
    log = tmp / "interrupted.log"
    try:
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, cwd=repo, env=fenv, stdout=f, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
        try:
            def others_ended() -> bool:
                return marker.exists() and log.read_text().count("\nsweep: trial-") >= 3
            wait_for(others_ended, 300, "trials 1-3 to end while trial 0 stalls", proc, interval=0.5)
            os.kill(proc.pid, signal.SIGTERM)  # the driver only, as a scheduler or `kill` would
            first_rc = proc.wait(timeout=120)
        finally:
            kill_group(proc.pid)
        first = log.read_text()
        resumed = sh([*cmd, "--resume"], repo, fenv, timeout=300)
        yield SimpleNamespace(repo=repo, env=env, tmp=tmp, uri=env["MLFLOW_TRACKING_URI"], first=first,
                              first_rc=first_rc, resumed=resumed, log=resumed.stdout + resumed.stderr,
                              params=params)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_sigterm_then_resume_completes_without_rerunning_finished_trials(swept) -> None:
    assert swept.first_rc == 130, swept.first[-4000:]
    assert "sweep tiny: interrupted with 1 of 4 trials unfinished" in swept.first, swept.first[-4000:]
    assert "continue it with `ganmodel sweep --resume`" in swept.first
    ended = [ln for ln in swept.first.splitlines() if ln.startswith("sweep: trial-")]
    assert sorted(ln.split()[1] for ln in ended) == ["trial-001", "trial-002", "trial-003"], ended
    # The resumed sweep runs trial 0 alone, from its checkpoint; the others are not started again.
    done = [ln for ln in swept.resumed.stdout.splitlines() if ln.startswith("sweep: trial-")]
    assert done == ["sweep: trial-000 finished (quick FID " + done[0].split("FID ")[1]], swept.log[-4000:]
    assert "resumed from epoch 1 (step 5)" in swept.log
    for run in _runs(swept.uri, "tags.`pipeline.stage` = 'sweep.trial'"):
        from mlflow.tracking import MlflowClient

        steps = [m.step for m in MlflowClient(swept.uri).get_metric_history(run.info.run_id, "fid")]
        assert len(steps) == len(set(steps)), (run.data.tags["sweep.trial"], steps)  # no epoch twice


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_mlflow_holds_one_sweep_parent_with_a_child_per_trial(swept) -> None:
    (parent,) = _runs(swept.uri, "tags.`pipeline.stage` = 'sweep'")
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.resumed"] == "true"
    assert parent.data.params["sweep.num_samples"] == "4"
    assert parent.data.metrics["trials_stopped_early"] >= 1
    children = _runs(swept.uri, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_trial = {int(c.data.tags["sweep.trial"]): c for c in children}
    assert sorted(by_trial) == [0, 1, 2, 3]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(swept.uri)
    for i, child in by_trial.items():
        tags, params = child.data.tags, child.data.params
        assert child.info.status == "FINISHED" and tags["pipeline.stage"] == "sweep.trial"
        assert float(params["override.lr_d"]) in (GOOD, BAD) and params["train.epochs"] == "2"
        assert params["train.eval_every"] == "1" and params["train.lr_g"] == str(GOOD)
        epochs = {2: 1}.get(i, 2)  # trial 2 is stopped after its first epoch
        assert tags["sweep.outcome"] == ("stopped_early" if i == 2 else "finished"), (i, tags)
        assert tags["sweep.epochs_run"] == str(epochs)
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "fid")]
        assert steps == list(range(1, epochs + 1))
        grids = [a.path for a in client.list_artifacts(child.info.run_id, "samples")]
        assert tags["sweep.final_grid"] == f"samples/epoch_{epochs:04d}.png"
        assert tags["sweep.final_grid"] in grids
        assert tags["placement.nodes"] == "1" and tags["placement.rank0"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"results.csv", "results.png",
                                                                        "best.yaml"}


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_results_and_best_yaml(swept) -> None:
    from ganmodel.config import parse_params
    from ganmodel.sweep.space import with_train

    out = swept.repo / "sweeps" / "tiny"
    with open(out / "results.csv") as f:
        rows = {int(r["trial"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == [0, 1, 2, 3]
    assert [float(rows[i]["lr_d"]) for i in range(4)] == [GOOD, GOOD, BAD, GOOD]
    assert rows[2]["status"] == "stopped_early" and rows[2]["stopped_early"] == "True"
    assert float(rows[2]["last_fid"]) > max(float(rows[i]["last_fid"]) for i in (0, 1, 3))
    assert all(rows[i]["status"] == "finished" and rows[i]["epochs_run"] == "2" for i in (0, 1, 3))
    assert all(rows[i]["mlflow_run_id"] and rows[i]["nodes"] for i in range(4))
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best == {"train": {"lr_d": GOOD}}
    # It validates through the params model when applied to params.yaml.
    assert parse_params(with_train(swept.params, best["train"])).train.lr_d == GOOD
    # params.yaml has no train.lr_d (the default applies): DVC adds it with `++`.
    assert swept.resumed.stdout.splitlines()[-1] == f"dvc exp run -S ++train.lr_d={GOOD}"


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_dvc_exp_run_with_the_best_overrides_succeeds_and_apply_queues_it(
        swept, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganmodel.sweep.report import dvc_command
    from ganmodel.sweep.runner import queue

    repo, env = swept.repo, swept.env
    (repo / ".gitignore").write_text("/sweeps/\n")
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-q", "-m", "base"], repo, env)
    best = yaml.safe_load((repo / "sweeps" / "tiny" / "best.yaml").read_text())["train"]
    line = swept.resumed.stdout.splitlines()[-1].split()
    assert line == dvc_command(best, swept.params["train"])
    proc = sh(line, repo, env, timeout=600)  # the printed line: train, evaluate, register
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr_d"] == GOOD
    (train,) = _runs(swept.uri, "tags.`pipeline.stage` = 'train'")
    assert train.info.status == "FINISHED" and train.data.params["train.lr_d"] == str(GOOD), describe(proc)
    assert _runs(swept.uri, "tags.`pipeline.stage` = 'register'"), describe(proc)
    # --apply: the same overrides, queued with the real dvc (params.yaml has lr_d by now: `++` still applies).
    monkeypatch.chdir(repo)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    queue(best, list(swept.params["train"]))
    status = sh(["dvc", "queue", "status"], repo, env).stdout
    assert "Queued" in status, status
    sh(["dvc", "queue", "remove", "--queued"], repo, env)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_failed_trial_is_retried_from_its_checkpoint(
        upstream_repo: Path, mlflow_template_db: Path, tmp_path: Path) -> None:
    """One trial whose worker raises after epoch 1, once: Tune's `FailureConfig` (sweep.max_failures)
    restarts it, and it resumes from its epoch-1 checkpoint (`tune.get_checkpoint`) and finishes in
    the same MLflow child run. One worker: a trial of two (its own `TorchTrainer` under
    `TuneReportCallback`, resumed under the same Train run name) goes through the same retry, at
    twice this test's cost in worker-group start-ups, more than the suite's budget allows."""
    from mlflow.tracking import MlflowClient

    ray_tmp = short_tmp("rr")
    try:
        repo, env = clone_stage_repo(upstream_repo, tmp_path, mlflow_template_db, ray_tmp, lr_g=GOOD,
                                     num_workers=1, steps_per_epoch=5, eval_samples=100,
                                     storage_path=str(tmp_path / "ckpt"))
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["sweep"] = {**SWEEP, "name": "retry", "space": {"lr_d": {"choice": [GOOD]}}, "num_samples": 1,
                           "scheduler": "none", "max_concurrent_trials": 1, "max_failures": 1}
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        marker = tmp_path / "fail.marker"
        proc = sh([sys.executable, "-m", "ganmodel", "sweep"], repo, with_faults(env, "fail_once", 1, marker),
                  timeout=500)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = proc.stdout + proc.stderr
    assert marker.exists(), log[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("sweep: trial-")]
    assert lines[0] == "sweep: trial-000 failed (failure 1); retrying from its last checkpoint", log[-4000:]
    assert lines[1].startswith("sweep: trial-000 finished (quick FID "), log[-4000:]
    assert "resumed from epoch 1 (step 5)" in log
    with open(repo / "sweeps" / "retry" / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "finished" and row["epochs_run"] == "2", row
    (child,) = _runs(env["MLFLOW_TRACKING_URI"], "tags.`pipeline.stage` = 'sweep.trial'")
    assert child.info.status == "FINISHED" and child.data.tags["sweep.outcome"] == "finished"
    history = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_metric_history(child.info.run_id, "fid")
    steps = [m.step for m in history]
    assert sorted(steps) == [1, 2], steps  # epoch 1 logged once, before the failure; epoch 2 after
