"""MLflow runs for pipeline stages: the store location, one run per stage execution, lineage
tags to upstream runs, and the small run-id files that link DVC outputs to MLflow runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ganmodel.errors import GanModelError, brief

STAGE_TAG = "pipeline.stage"
UPSTREAM_TAG = "upstream.{stage}.run_id"
DATA_HASH_TAG = "data.hash"
GIT_TAG = "git.commit"

MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # Fail fast on an unreachable server instead of retrying for minutes.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def default_tracking_uri(root: str | os.PathLike[str]) -> str:
    """sqlite store under `<root>/mlruns` (four slashes: an absolute path)."""
    return "sqlite:///" + str((Path(root) / "mlruns" / "mlflow.db").absolute())


def configure_tracking(root: str | os.PathLike[str] = ".") -> str:
    """Resolve the tracking URI (`MLFLOW_TRACKING_URI` wins), export it for child processes
    (Ray workers), and check that a remote server answers."""
    for k, v in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    elif uri.startswith(("http://", "https://")):
        check_server(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with a clear message when an MLflow server does not answer `/health`."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status != 200:
                raise GanModelError(f"MLFLOW_TRACKING_URI: {uri} answered /health with {r.status}")
    except (urllib.error.URLError, OSError) as err:
        raise GanModelError(
            f"MLFLOW_TRACKING_URI: MLflow server at {uri} is unreachable ({brief(err)})") from None


def artifact_root(root: str | os.PathLike[str], uri: str) -> str | None:
    """Absolute artifact location for a local store (beside its sqlite file); a server decides its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).absolute().parent / "artifacts").as_uri()
    if uri.startswith("file:") or "://" not in uri:
        return (Path(root).absolute() / "mlruns" / "artifacts").as_uri()
    return None


def ensure_experiment(name: str, root: str | os.PathLike[str], uri: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise GanModelError(f"tracking.experiment: experiment {name!r} is deleted; "
                                "restore it or pick another name")
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(root, uri))


def git_commit(root: str | os.PathLike[str] = ".") -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = out.stdout.strip() if out.returncode == 0 else "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True).stdout.strip()
    return commit + ("-dirty" if dirty and commit != "unknown" else "")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_run_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a `runs/<stage>.json` link file written by an upstream stage."""
    p = Path(path)
    if not p.is_file():
        raise GanModelError(f"{p}: upstream run file not found; run the upstream stage first")
    try:
        obj = json.loads(p.read_text())
        obj["run_id"]  # noqa: B018 - presence check
    except (json.JSONDecodeError, KeyError, TypeError):
        raise GanModelError(f"{p}: expected JSON with a 'run_id' field") from None
    return obj


PARENT_TAG = "pipeline.execution"
MLFLOW_PARENT_TAG = "mlflow.parentRunId"  # what MLflow's UI nests child runs by
RESUMED_FROM_PARENT_TAG = "resumed.from_parent"
PIPELINE_ID_ENV = "GANMODEL_PIPELINE_ID"


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a process from /proc; None where /proc is unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]
    except (OSError, IndexError, ValueError):
        return None


def pipeline_execution_id() -> str | None:
    """An id shared by the stages of one `dvc repro` / `dvc exp run` and by no other execution.

    `GANMODEL_PIPELINE_ID` wins; otherwise the pid and start time of the `dvc` process that
    launched this stage (DVC runs stages as its descendants). None when not run by DVC.
    """
    if env := os.environ.get(PIPELINE_ID_ENV):
        return env
    pid = os.getppid()
    for _ in range(8):
        stat = _proc_stat(pid)
        if stat is None or pid <= 1:
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if any(Path(a.decode(errors="replace")).name == "dvc" for a in argv[:2]):
            return f"dvc-{socket.gethostname()}-{pid}-{stat[1]}"
        pid = stat[0]
    return None


def close_stale_executions(client: Any, experiment_id: str) -> list[str]:
    """Mark KILLED the parent runs of executions launched on this host whose `dvc` process is
    gone (a killed `dvc repro` never closes its parent run). Other hosts' runs are left alone."""
    prefix = f"dvc-{socket.gethostname()}-"
    closed = []
    for run in client.search_runs([experiment_id], filter_string="tags.`pipeline.role` = 'execution' and "
                                  "attributes.status = 'RUNNING'", max_results=200):
        execution = run.data.tags.get(PARENT_TAG, "")
        if not execution.startswith(prefix):
            continue
        try:
            pid, start = execution.removeprefix(prefix).split("-")
            alive = _proc_stat(int(pid))
        except ValueError:
            continue
        if alive is None or alive[1] != start:
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    return closed


def parent_run_id(client: Any, experiment_id: str, execution: str, commit: str) -> str:
    """The parent run grouping this pipeline execution's stage runs (created on first use)."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{execution}'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    exp_name = os.environ.get("DVC_EXP_NAME")
    name = f"dvc exp {exp_name}" if exp_name else f"dvc repro {commit[:8]}"
    run = client.create_run(experiment_id, run_name=name,
                            tags={PARENT_TAG: execution, GIT_TAG: commit, "pipeline.role": "execution"})
    return run.info.run_id


RESUMED_TAG = "resumed"


def find_unfinished_run(experiment: str, stage: str, tags: dict[str, str],
                        root: str | os.PathLike[str] = ".") -> Any | None:
    """The latest run of `stage` carrying all of `tags` that did not finish (RUNNING after a
    killed process, FAILED, KILLED), or None: what a re-run continues instead of opening a
    second run. Deleted runs and experiments are ignored."""
    from mlflow.tracking import MlflowClient

    if any("'" in v for v in tags.values()):
        return None  # not expressible in a filter string; start a new run
    uri = configure_tracking(root)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage == "deleted":
        return None
    filters = [f"tags.`{STAGE_TAG}` = '{stage}'", *(f"tags.`{k}` = '{v}'" for k, v in tags.items()),
               "attributes.status != 'FINISHED'"]  # RUNNING (killed), FAILED, KILLED, SCHEDULED
    found = client.search_runs([exp.experiment_id], filter_string=" and ".join(filters),
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def read_upstream(items: list[str]) -> dict[str, str]:
    """`["prepare=runs/prepare.json", ...]` -> `{"prepare": <run id>, ...}`."""
    out = {}
    for item in items:
        stage, sep, path = item.partition("=")
        if not sep or not stage or not path:
            raise GanModelError(f"--upstream: expected STAGE=RUN_FILE, got {item!r}")
        out[stage] = read_run_file(path)["run_id"]
    return out


@contextmanager
def stage_run(
    stage: str,
    experiment: str,
    params: dict[str, Any],
    upstream: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    root: str | os.PathLike[str] = ".",
    run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[Any]:
    """One MLflow run for one stage execution; FAILED if the block raises.

    `upstream` maps upstream stage names to their run ids (lineage tags). `run_id` resumes an
    existing run (a re-run after a kill continues the same run instead of opening a second).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = configure_tracking(root)
    mlflow.set_tracking_uri(uri)
    exp_id = ensure_experiment(experiment, root, uri)
    commit = git_commit(root)
    all_tags = {STAGE_TAG: stage, GIT_TAG: commit, **(tags or {})}
    for up_stage, up_id in (upstream or {}).items():
        all_tags[UPSTREAM_TAG.format(stage=up_stage)] = up_id
    if name := os.environ.get("DVC_EXP_NAME"):
        all_tags["dvc.exp_name"] = name
    client = MlflowClient(uri)
    parent = None
    if (execution := pipeline_execution_id()) is not None:
        close_stale_executions(client, exp_id)
        parent = parent_run_id(client, exp_id, execution, commit)
        # The previous stage left it FINISHED; back to RUNNING while this stage runs, so a kill
        # now leaves it RUNNING and the next execution's close_stale_executions marks it KILLED.
        client.update_run(parent, status="RUNNING")
    kwargs: dict[str, Any] = {"run_id": run_id} if run_id else {
        "experiment_id": exp_id, "run_name": stage, "parent_run_id": parent}
    if run_id and parent:
        # A continued run belongs to the execution that finishes it, next to the downstream runs
        # that consume it; the execution that started it stays findable.
        before = client.get_run(run_id).data.tags.get(MLFLOW_PARENT_TAG)
        if before and before != parent:
            client.set_tag(run_id, RESUMED_FROM_PARENT_TAG, before)
        client.set_tag(run_id, MLFLOW_PARENT_TAG, parent)
    try:
        with mlflow.start_run(tags=all_tags, log_system_metrics=system_metrics, **kwargs) as run:
            if not run_id:
                mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
            yield run
    except BaseException:
        if parent:
            client.set_terminated(parent, "FAILED")
        raise
    if parent:
        # Each finished stage moves the execution's end time; a later failure marks it FAILED.
        client.set_terminated(parent, "FINISHED")


def run_link(run: Any, **extra: Any) -> dict[str, Any]:
    """The content of a `runs/<stage>.json` DVC output."""
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, **extra}
