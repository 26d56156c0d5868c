"""MLflow runs of a sweep: one parent run per sweep (tagged `pipeline.stage=sweep`), one child run per
trial, opened by the trial itself (its rank 0 logs into it live, through `MlflowTracker`), and the
outcome of each trial (finished, stopped early by the scheduler, failed) set by the driver once Ray
Tune has decided.

The sweep and its trials use the pipeline's experiment and store (`store.configure_tracking`,
`store.ensure_experiment`: an absolute artifact root, so trial actors on any node log alike)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ganmodel.tracking.runs import GIT_TAG, MLFLOW_PARENT_TAG, STAGE_TAG, flatten, git_commit
from ganmodel.tracking.store import configure_tracking, ensure_experiment

SWEEP_STAGE = "sweep"
TRIAL_STAGE = "sweep.trial"  # children are no pipeline stage: searching `sweep` finds parents only
SWEEP_NAME_TAG = "sweep.name"
TRIAL_TAG = "sweep.trial"  # the trial's index in the sampled list
OUTCOME_TAG = "sweep.outcome"  # finished | stopped_early | failed
EPOCHS_TAG = "sweep.epochs_run"
FINAL_GRID_TAG = "sweep.final_grid"
RESUMED_TAG = "sweep.resumed"


@dataclass(frozen=True)
class SweepRun:
    """Where a sweep's runs live: plain data, handed to every trial."""

    run_id: str
    experiment_id: str
    tracking_uri: str


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    batch = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
    for i in range(0, len(batch), 100):
        client.log_batch(run_id, params=batch[i:i + 100], synchronous=True)


def start_sweep_run(experiment: str, name: str, params: dict[str, Any], tags: dict[str, str],
                    root: str | os.PathLike[str] = ".") -> SweepRun:
    """Create the sweep's parent run in `experiment`, with `params` (nested sections) and `tags`."""
    uri = configure_tracking(root)
    exp_id = ensure_experiment(experiment, root, uri)
    client = _client(uri)
    run = client.create_run(exp_id, run_name=f"sweep {name}", tags={
        STAGE_TAG: SWEEP_STAGE, SWEEP_NAME_TAG: name, GIT_TAG: git_commit(root), **tags})
    _log_params(client, run.info.run_id, params)
    return SweepRun(run.info.run_id, exp_id, uri)


def reopen_sweep_run(run_id: str, root: str | os.PathLike[str] = ".") -> SweepRun:
    """The parent run of an interrupted sweep, RUNNING again and tagged `sweep.resumed`."""
    uri = configure_tracking(root)
    client = _client(uri)
    run = client.get_run(run_id)
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, RESUMED_TAG, "true")
    return SweepRun(run_id, run.info.experiment_id, uri)


def open_trial_run(sweep: SweepRun, name: str, index: int, params: dict[str, Any],
                   tags: dict[str, str]) -> str:
    """The child run of trial `index`: created with `params` on the trial's first start, the same
    run when Tune retries or resumes the trial (so its curve stays one curve)."""
    client = _client(sweep.tracking_uri)
    found = client.search_runs([sweep.experiment_id], max_results=1, filter_string=(
        f"tags.`{MLFLOW_PARENT_TAG}` = '{sweep.run_id}' and tags.`{TRIAL_TAG}` = '{index}'"))
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = client.create_run(sweep.experiment_id, run_name=f"{name} trial {index:03d}", tags={
        MLFLOW_PARENT_TAG: sweep.run_id, STAGE_TAG: TRIAL_STAGE, SWEEP_NAME_TAG: name,
        TRIAL_TAG: str(index), **tags})
    _log_params(client, run.info.run_id, params)
    return run.info.run_id


def trial_runs(sweep: SweepRun) -> dict[int, Any]:
    """The sweep's child runs by trial index (MLflow `Run`s: tags, params, status)."""
    client = _client(sweep.tracking_uri)
    runs = client.search_runs([sweep.experiment_id], max_results=5000,
                              filter_string=f"tags.`{MLFLOW_PARENT_TAG}` = '{sweep.run_id}'")
    return {int(r.data.tags[TRIAL_TAG]): r for r in runs if TRIAL_TAG in r.data.tags}


def metric_history(sweep: SweepRun, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of metric `key` in run `run_id`, by step."""
    hist = _client(sweep.tracking_uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in hist)


def close_trial_run(sweep: SweepRun, run_id: str, tags: dict[str, str], failed: bool) -> None:
    """Tag a trial's outcome and end its run (a trial stopped by the scheduler cannot end it itself)."""
    client = _client(sweep.tracking_uri)
    for k, v in tags.items():
        client.set_tag(run_id, k, str(v))
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def close_sweep_run(sweep: SweepRun, status: str, metrics: dict[str, float] | None = None,
                    tags: dict[str, str] | None = None,
                    artifacts: list[str | os.PathLike[str]] | None = None) -> None:
    """End the parent run with `status` (FINISHED, FAILED, KILLED) after logging the results."""
    client = _client(sweep.tracking_uri)
    for k, v in (metrics or {}).items():
        client.log_metric(sweep.run_id, k, float(v))
    for k, v in (tags or {}).items():
        client.set_tag(sweep.run_id, k, str(v))
    for path in artifacts or []:
        client.log_artifact(sweep.run_id, str(path))
    client.set_terminated(sweep.run_id, status)
