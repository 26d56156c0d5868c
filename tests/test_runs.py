"""Pipeline-execution parent runs: a killed `dvc repro` leaves its parent RUNNING; the next
execution on the same host closes it, and leaves other hosts' and live executions alone."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from mlflow.tracking import MlflowClient

from ganmodel.tracking.runs import PARENT_TAG, _proc_stat, close_stale_executions


def _dead_pid() -> int:
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid += 1
    return pid


def test_close_stale_executions(tmp_path: Path) -> None:
    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    exp = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    host = socket.gethostname()
    me = _proc_stat(os.getpid())
    assert me is not None
    executions = {
        "dead_here": f"dvc-{host}-{_dead_pid()}-123",
        "alive_here": f"dvc-{host}-{os.getpid()}-{me[1]}",
        "reused_pid": f"dvc-{host}-{os.getpid()}-{int(me[1]) + 1}",  # same pid, other start time
        "other_host": f"dvc-{host}x-{_dead_pid()}-123",
    }
    ids = {k: client.create_run(exp, tags={PARENT_TAG: v, "pipeline.role": "execution"}).info.run_id
           for k, v in executions.items()}
    closed = close_stale_executions(client, exp)
    assert sorted(closed) == sorted([ids["dead_here"], ids["reused_pid"]])
    status = {k: client.get_run(i).info.status for k, i in ids.items()}
    assert status == {"dead_here": "KILLED", "alive_here": "RUNNING", "reused_pid": "KILLED",
                      "other_host": "RUNNING"}
    assert close_stale_executions(client, exp) == []


def test_parent_run_is_running_while_a_later_stage_runs(tmp_path: Path, monkeypatch) -> None:
    """A kill during the second stage of an execution must leave its parent RUNNING (closable),
    not FINISHED from the first stage."""
    from ganmodel.tracking.runs import PIPELINE_ID_ENV, stage_run

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(PIPELINE_ID_ENV, "execution-under-test")
    with stage_run("prepare", "t", {}, root=tmp_path) as first:
        pass
    client = MlflowClient(uri)
    parent = first.data.tags["mlflow.parentRunId"]
    assert client.get_run(parent).info.status == "FINISHED"
    with stage_run("train", "t", {}, root=tmp_path) as second:
        assert second.data.tags["mlflow.parentRunId"] == parent
        assert client.get_run(parent).info.status == "RUNNING"
    assert client.get_run(parent).info.status == "FINISHED"


def test_read_upstream(tmp_path: Path) -> None:
    import json

    import pytest

    from ganmodel.errors import GanModelError
    from ganmodel.tracking.runs import read_upstream

    (tmp_path / "p.json").write_text(json.dumps({"run_id": "abc"}))
    assert read_upstream([f"prepare={tmp_path / 'p.json'}"]) == {"prepare": {"run_id": "abc"}}
    with pytest.raises(GanModelError, match="--upstream: missing classifier=RUN_FILE"):
        read_upstream([f"prepare={tmp_path / 'p.json'}"], required=("prepare", "classifier"))
    for bad in ("prepare", "=x.json", "prepare="):
        with pytest.raises(GanModelError, match="--upstream: expected STAGE=RUN_FILE"):
            read_upstream([bad])
    with pytest.raises(GanModelError, match="upstream run file not found"):
        read_upstream([f"train={tmp_path / 'missing.json'}"])
