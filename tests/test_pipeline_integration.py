"""End to end: `dvc repro train` in a copy of the repo (real DVC, Ray Train with 2 workers, MLflow
on sqlite), then the lineage between DVC outputs and MLflow runs is checked.

Only `train` and its upstream stages run (prepare, and the evaluation classifier where dvc.yaml
has it), with tiny params, so the test keeps working as later stages are added."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from stage_repo import copy_repo, stage_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n"
        f"--- stderr\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def pipeline(repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pipeline")
    repo = tmp / "repo"
    copy_repo(repo_root, repo)

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["train"].update(preset="custom", epochs=2, steps_per_epoch=3, batch_size=64, num_workers=2,
                           use_gpu=False, precision="fp32", ema_decay=0.0, eval_every=0, ray_address=None,
                           storage_path=str(tmp / "ray-checkpoints"), max_failures=0)
    if "classifier" in params:  # train needs the evaluation classifier: one quick epoch, no floor
        params["classifier"].update(epochs=1, min_accuracy=0.0)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])

    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = stage_env(repo, tmp, ray_tmp)  # the copied sources on PYTHONPATH, a private MLflow store
    try:
        _sh(["git", "init", "-q"], repo, env)
        _sh(["dvc", "init", "-q"], repo, env)
        shutil.copy2(repo_root / ".dvc" / "config", repo / ".dvc" / "config")  # analytics off
        # Only `train` (and what it depends on): other stages may be added to dvc.yaml meanwhile.
        repro = _sh(["dvc", "repro", "train"], repo, env, timeout=600)
        status = _sh(["dvc", "status", "train"], repo, env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    yield {"repo": repo, "tmp": tmp, "uri": env["MLFLOW_TRACKING_URI"], "repro": repro, "status": status,
           "params": params, "stages": stages}


@pytest.fixture(scope="module")
def runs(pipeline):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(pipeline["uri"])
    exp = client.get_experiment_by_name(pipeline["params"]["tracking"]["experiment"])
    assert exp is not None, "experiment was not created"
    by_stage = {}
    for stage in ("prepare", "classifier", "train"):
        if stage not in pipeline["stages"]:
            continue
        found = client.search_runs([exp.experiment_id], filter_string=f"tags.`pipeline.stage` = '{stage}'")
        assert len(found) == 1, f"{len(found)} runs tagged pipeline.stage={stage}"
        by_stage[stage] = found[0]
    return client, exp, by_stage


def test_repro_ran_both_stages_and_is_up_to_date(pipeline) -> None:
    out = pipeline["repro"].stdout + pipeline["repro"].stderr
    assert "Running stage 'prepare'" in out and "Running stage 'train'" in out
    assert (pipeline["repo"] / "dvc.lock").is_file()
    lock = yaml.safe_load((pipeline["repo"] / "dvc.lock").read_text())
    assert {"prepare", "train"} <= set(lock["stages"])
    # `dvc repro train` runs train and its upstream stages only.
    assert not {"evaluate", "register"} & set(lock["stages"])
    # Nothing the stages wrote invalidated their own dependencies.
    assert "up to date" in pipeline["status"].stdout, pipeline["status"].stdout


def test_artifacts_go_to_a_fixed_absolute_location(pipeline, runs) -> None:
    """Not relative to some process's cwd (Ray workers chdir): under this test's directory."""
    _, exp, by_stage = runs
    assert exp.artifact_location.startswith(pipeline["tmp"].as_uri() + "/"), exp.artifact_location
    for run in by_stage.values():
        assert run.info.artifact_uri.startswith(exp.artifact_location), run.info.artifact_uri
    root = Path(exp.artifact_location.removeprefix("file://"))
    assert any(root.rglob("generator.pt")) and any(root.rglob("epoch_0002.png"))


def test_prepare_run(pipeline, runs) -> None:
    _, _, by_stage = runs
    run = by_stage["prepare"]
    assert run.info.status == "FINISHED"
    assert run.data.params["data.dataset"] == "mnist5k"
    assert run.data.params["data.seed"] == str(pipeline["params"]["data"]["seed"])
    assert run.data.params["data.val_fraction"] == str(pipeline["params"]["data"]["val_fraction"])
    assert run.data.metrics["train_count"] == 4000
    assert run.data.metrics["val_count"] == 500 and run.data.metrics["test_count"] == 500
    meta = json.loads((pipeline["repo"] / "data" / "prepared" / "meta.json").read_text())
    assert run.data.tags["data.hash"] == meta["data_hash"]
    link = json.loads((pipeline["repo"] / "runs" / "prepare.json").read_text())
    assert link["run_id"] == run.info.run_id and link["data_hash"] == meta["data_hash"]
    metrics = json.loads((pipeline["repo"] / "metrics" / "prepare.json").read_text())
    assert metrics["data_hash"] == meta["data_hash"] and metrics["train"] == {"count": 4000}
    assert meta["class_counts"]["train"] == {str(c): 400 for c in range(10)}  # mnist5k: stratified


def test_train_run(pipeline, runs) -> None:
    client, _, by_stage = runs
    run, prep = by_stage["train"], by_stage["prepare"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["upstream.prepare.run_id"] == prep.info.run_id
    if "classifier" in by_stage:
        clf = by_stage["classifier"]
        assert clf.info.status == "FINISHED"
        assert clf.data.tags["upstream.prepare.run_id"] == prep.info.run_id
        assert run.data.tags["upstream.classifier.run_id"] == clf.info.run_id
    assert run.data.tags["data.hash"] == prep.data.tags["data.hash"]
    from ganmodel.config import load_params

    resolved = load_params(pipeline["repo"] / "params.yaml").train  # the preset's keys included
    assert run.data.params["train.epochs"] == "2" and run.data.params["train.arch"] == resolved.arch
    assert run.data.params["scaling.workers"] == "2"
    for key in ("d_loss", "g_loss"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2], key
        assert all(math.isfinite(m.value) for m in history)

    def files(path: str) -> set[str]:
        return {a.path for a in client.list_artifacts(run.info.run_id, path)}

    assert "generator/generator.pt" in files("generator")
    samples = files("samples")
    assert "samples/train_samples.png" in samples
    assert {"samples/epoch_0001.png", "samples/epoch_0002.png"} <= samples  # logged by rank 0

    link = json.loads((pipeline["repo"] / "runs" / "train.json").read_text())
    assert link["run_id"] == run.info.run_id

    # The generator is the run's logged model (what evaluate attaches metrics to, register registers).
    model = client.get_logged_model(link["model_id"])
    assert model.source_run_id == run.info.run_id
    assert model.tags["weights_hash"] == link["weights_hash"]
    from ganmodel.artifacts import GENERATOR, file_weights_hash

    assert link["weights_hash"] == file_weights_hash(pipeline["repo"] / "models" / "generator.pt", GENERATOR)


def test_prepared_data_is_every_stage_s_dataset_input(pipeline, runs) -> None:
    """The runs table's Dataset column: name, digest (the data hash) and source of the prepared data."""
    client, exp, by_stage = runs
    meta = json.loads((pipeline["repo"] / "data" / "prepared" / "meta.json").read_text())
    contexts = {"prepare": "prepared", "classifier": "training", "train": "training"}
    for stage, context in contexts.items():
        if stage not in by_stage:
            continue
        inputs = client.get_run(by_stage[stage].info.run_id).inputs.dataset_inputs
        assert len(inputs) == 1, (stage, inputs)
        ds = inputs[0].dataset
        assert (ds.name, ds.digest) == ("mnist5k", meta["data_hash"][:36]), stage
        assert json.loads(ds.source)["uri"].endswith("/data/prepared"), ds.source
        assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == context
    # The UI files the experiment as model training, not GenAI.
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_train_outputs(pipeline) -> None:
    import torch

    from ganmodel.artifacts import load_generator

    repo = pipeline["repo"]
    summary = json.loads((repo / "metrics" / "train.json").read_text())
    assert summary["epochs"] == 2
    assert math.isfinite(summary["final_d_loss"]) and math.isfinite(summary["final_g_loss"])
    with open(repo / "plots" / "train_losses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["d_loss"]) == pytest.approx(summary["final_d_loss"], abs=1e-5)
    g, _ = load_generator(repo / "models" / "generator.pt")
    with torch.no_grad():
        out = g(torch.randn(3, 100))
    assert out.shape == (3, 1, 28, 28) and torch.isfinite(out).all()
    assert (repo / "reports" / "train_samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Ray Train checkpoints went to train.storage_path.
    assert any((pipeline["tmp"] / "ray-checkpoints").rglob("state.pt"))
