"""MLflow runs for pipeline stages: one run per stage execution, grouped under one parent run per
pipeline execution, lineage tags to upstream runs, the prepared dataset as a run input, and the
small run-id files that link DVC outputs to MLflow runs.

Stage scripts log through the `StageRun` that `stage_run` yields; they never call MLflow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ganmodel.errors import GanModelError
from ganmodel.tracking.store import configure_tracking, ensure_experiment

STAGE_TAG = "pipeline.stage"
UPSTREAM_TAG = "upstream.{stage}.run_id"
DATA_HASH_TAG = "data.hash"
CLASSIFIER_HASH_TAG = "classifier.hash"
GIT_TAG = "git.commit"


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


def read_upstream(items: list[str], required: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """`["prepare=runs/prepare.json", ...]` -> `{"prepare": <its run link>, ...}`: how every stage
    takes its upstream runs. `required` names the stages that must be there."""
    out = {}
    for item in items:
        stage, sep, path = item.partition("=")
        if not sep or not stage or not path:
            raise GanModelError(f"--upstream: expected STAGE=RUN_FILE, got {item!r}")
        out[stage] = read_run_file(path)
    if missing := [s for s in required if s not in out]:
        raise GanModelError(f"--upstream: missing {missing[0]}=RUN_FILE (this stage reads that run)")
    return out


def run_ids(links: dict[str, dict[str, Any]]) -> dict[str, str]:
    """`{stage: run link}` -> `{stage: run id}` (the lineage tags)."""
    return {stage: str(link["run_id"]) for stage, link in links.items()}


# MLflow limits a dataset digest to 36 characters: the data hash's prefix (144 bits).
DATASET_DIGEST_CHARS = 36


class StageRun:
    """The MLflow run of one stage execution: what stage scripts log through."""

    def __init__(self, run: Any, client: Any, parent: str | None = None) -> None:
        self._run, self._client, self._parent = run, client, parent

    @property
    def info(self) -> Any:
        """MLflow's `RunInfo` (run_id, experiment_id, artifact_uri, ...)."""
        return self._run.info

    @property
    def data(self) -> Any:
        """MLflow's `RunData` as the run started (its tags, params)."""
        return self._run.data

    @property
    def run_id(self) -> str:
        return self._run.info.run_id

    @property
    def tracking_uri(self) -> str:
        import mlflow

        return mlflow.get_tracking_uri()

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        mlflow.log_params({k: str(v) for k, v in params.items()})

    def set_tags(self, tags: dict[str, Any]) -> None:
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)

    def log_dict(self, obj: dict[str, Any], artifact_file: str) -> None:
        import mlflow

        mlflow.log_dict(obj, artifact_file)

    def log_dataset(self, meta: dict[str, Any], prepared_dir: str | os.PathLike[str], context: str) -> None:
        """Log the prepared data as a run input (the runs table's Dataset column): name = dataset,
        digest = data hash, source = the prepared directory; `context` says how it was used."""
        import mlflow
        from mlflow.entities import DatasetInput, InputTag

        dataset = prepared_dataset(meta, prepared_dir)
        tags = {"splits": json.dumps(meta.get("splits", {}), sort_keys=True)}
        mlflow.log_input(dataset, context=context, tags=tags)
        if self._parent and not self._client.get_run(self._parent).inputs.dataset_inputs:
            # The execution's parent run too: a collapsed pipeline row shows its data.
            ds_input = DatasetInput(dataset._to_mlflow_entity(),
                                    [InputTag("mlflow.data.context", "pipeline"),
                                     *(InputTag(k, v) for k, v in tags.items())])
            self._client.log_inputs(self._parent, datasets=[ds_input])

    def log_source(self, source: dict[str, Any]) -> None:
        """Log the raw data a folder dataset was prepared from (meta.json's `source`: a folder or an
        archive) as a run input, context `source`: digest = the content digest of its image files,
        so a changed folder shows as another dataset in the runs table."""
        import mlflow

        path = Path(source["raw_dir"]).expanduser()
        dataset = _meta_dataset(path.name or str(path), str(source["digest"]), path)
        tags = {"kind": str(source["kind"]), "files": json.dumps(source.get("files", {}), sort_keys=True)}
        mlflow.log_input(dataset, context="source", tags=tags)

    def history(self, key: str) -> list[Any]:
        """MLflow's metric history of `key` in this run."""
        return self._client.get_metric_history(self.run_id, key)


def _meta_dataset(name: str, digest: str, path: str | os.PathLike[str]) -> Any:
    """An MLflow dataset of metadata only (name, digest, local source): the files stay DVC's."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        # MLflow registers its local-file source under two schemes and warns that it picked one.
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
        source = resolve_dataset_source(Path(path).absolute().as_uri())
    return MetaDataset(source=source, name=name, digest=digest[:DATASET_DIGEST_CHARS])


def prepared_dataset(meta: dict[str, Any], prepared_dir: str | os.PathLike[str]) -> Any:
    """The prepared splits as an MLflow dataset: name = dataset, digest = data hash."""
    return _meta_dataset(str(meta["dataset"]), str(meta["data_hash"]), prepared_dir)


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
) -> Iterator[StageRun]:
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
            yield StageRun(run, client, parent)
    except BaseException:
        if parent:
            client.set_terminated(parent, "FAILED")
        raise
    if parent:
        # Each finished stage moves the execution's end time; a later failure marks it FAILED.
        client.set_terminated(parent, "FINISHED")


EPOCH_METRIC = "d_loss"  # logged by rank 0 at every epoch: which epochs a run already holds
BACKFILLED_TAG = "metrics.backfilled_epochs"


def backfill_history(run_id: str, history: list[dict[str, float]],
                     tracking_uri: str | None = None) -> list[int]:
    """Log the per-epoch metrics of `history` (from the final checkpoint) that the MLflow run lacks;
    return those epochs. A fresh run whose Ray run had already trained (e.g. `dvc repro -f` with an
    unchanged config: the deterministic result is reused from the checkpoint) or had trained part of
    the way under another MLflow run would otherwise miss those epochs' curves."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    logged = {m.step for m in client.get_metric_history(run_id, EPOCH_METRIC)}
    missing = [h for h in history if int(h["epoch"]) not in logged]
    ts = int(time.time() * 1000)
    batch = [Metric(k, float(v), ts, int(h["epoch"])) for h in missing for k, v in h.items()
             if k != "epoch" and isinstance(v, int | float)]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i:i + 1000], synchronous=True)
    epochs = [int(h["epoch"]) for h in missing]
    if epochs:
        client.set_tag(run_id, BACKFILLED_TAG, ",".join(map(str, epochs)))
    return epochs


def run_link(run: Any, **extra: Any) -> dict[str, Any]:
    """The content of a `runs/<stage>.json` DVC output."""
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, **extra}
