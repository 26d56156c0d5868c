"""MLflow test helpers (plain functions): fabricated generators, evaluation metrics and stage
inputs, free ports, child-process environments. The fixtures live in `fixtures_mlflow`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATA_HASH = "d" * 64
CLASSIFIER_HASH = "c" * 64
EVAL_CODE_HASH = "e" * 64


def sqlite_uri(path: Path) -> str:
    """Absolute sqlite URI (four slashes)."""
    return "sqlite:///" + str(Path(path).absolute())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: the venv first on PATH, quiet MLflow."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as err:
            last = err
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last})")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a process started with start_new_session=True, and its children."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def make_generator(path: Path, seed: int = 0, z_dim: int = 100) -> Path:
    """A random (untrained) MLP generator file in the train stage's format."""
    import torch

    from ganmodel.artifacts import save_generator
    from ganmodel.networks import build_generator

    torch.manual_seed(seed)
    g = build_generator("mlp", z_dim)
    meta = {"arch": "mlp", "z_dim": z_dim, "dataset": "mnist5k", "data_hash": DATA_HASH, "ema": False,
            "image_shape": [1, 28, 28]}
    save_generator(g.state_dict(), meta, path)
    return path


def weights_of(path: Path) -> str:
    """The weights hash of a generator file (what the evaluate stage records)."""
    from ganmodel.artifacts import GENERATOR, file_weights_hash

    return file_weights_hash(path, GENERATOR)


def eval_metrics(**overrides: Any) -> dict[str, Any]:
    """An evaluate-stage metrics JSON (the contract's keys), gate-passing by default; pass
    `generator_hash=weights_of(path)` for the generator it describes."""
    m: dict[str, Any] = {
        "n_samples": 2000.0, "fid": 10.0, "fid_floor": 5.0, "fid_ratio": 2.0, "kid_mean": 0.01,
        "kid_std": 0.001, "is_mean": 8.5, "is_std": 0.2, "precision": 0.7, "recall": 0.6, "density": 0.9,
        "coverage": 0.8, "classes_covered": 10.0, "class_kl": 0.05, "data_copying": 0.4,
        "data_hash": DATA_HASH, "classifier_hash": CLASSIFIER_HASH, "eval_seed": 1234,
        "eval_code_hash": EVAL_CODE_HASH, "conditional": False, "generator_hash": "0" * 64,
    }
    m.update(overrides)
    return m


def log_train_model(generator: Path, tracking_uri: str, experiment: str = "tests") -> tuple[str, str]:
    """A finished train-like run holding `generator` as its logged model: (run id, model id)."""
    import mlflow

    from ganmodel.tracking.models import log_generator_model
    from ganmodel.tracking.store import ensure_experiment

    mlflow.set_tracking_uri(tracking_uri)
    exp = ensure_experiment(experiment, Path(tracking_uri.removeprefix("sqlite:///")).parent.parent,
                            tracking_uri)
    with mlflow.start_run(experiment_id=exp, tags={"pipeline.stage": "train"}) as run:
        mlflow.log_artifact(str(generator), "generator")  # as the train stage does
        info = log_generator_model(generator)
    return run.info.run_id, info.model_id


def unique_name(prefix: str = "gan") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register_like_pipeline(tracking_uri: str, experiment_id: str, name: str, generator: Path,
                           metrics: dict[str, Any] | None = None, **cfg: Any) -> tuple[dict, dict[str, str]]:
    """What the pipeline does: a train run logs `generator` as a model, an evaluate run attaches the
    metrics to it, a register run registers it. Returns (register_generator's result + model_id,
    run ids by stage). Metrics with the placeholder generator_hash get the generator's."""
    import mlflow

    from ganmodel.config import RegisterParams
    from ganmodel.registry.register import register_generator
    from ganmodel.tracking.models import log_model_metrics
    from ganmodel.tracking.runs import git_commit

    metrics = dict(metrics or eval_metrics())
    if metrics.get("generator_hash") == eval_metrics()["generator_hash"]:
        metrics["generator_hash"] = weights_of(generator)
    train_run, model_id = log_train_model(generator, tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id) as evaluate:
        numbers = {k: v for k, v in metrics.items() if isinstance(v, float | int) and not isinstance(v, bool)}
        log_model_metrics(model_id, numbers)
    run_ids = {"prepare": uuid.uuid4().hex, "classifier": uuid.uuid4().hex, "train": train_run,
               "evaluate": evaluate.info.run_id}
    with mlflow.start_run(experiment_id=experiment_id) as run:
        run_ids["register"] = run.info.run_id
        out = register_generator(generator, metrics, RegisterParams(model_name=name, **cfg),
                                 model_id=model_id, run_ids=run_ids, git_commit=git_commit("."))
    return {**out, "model_id": model_id}, run_ids


def write_stage_inputs(root: Path, model_name: str, tracking_uri: str, experiment: str = "tests",
                       seed: int = 11, **metric_overrides: Any) -> list[str]:
    """Fabricate everything `pipelines/register.py` reads under `root` (the generator logged as a
    model of a train-like run in `tracking_uri`); return the stage's arguments."""
    import json

    import yaml

    for d in ("models", "metrics", "runs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    gen = make_generator(root / "models" / "generator.pt", seed=seed)
    weights = weights_of(gen)
    train_run, model_id = log_train_model(gen, tracking_uri, experiment)
    metrics = eval_metrics(generator_hash=weights, **metric_overrides)
    (root / "metrics" / "evaluate.json").write_text(json.dumps(metrics))
    links = {"prepare": {"data_hash": DATA_HASH}, "classifier": {"classifier_hash": CLASSIFIER_HASH},
             "train": {"run_id": train_run, "data_hash": DATA_HASH, "model_id": model_id,
                       "weights_hash": weights}, "evaluate": {"generator_hash": weights}}
    for stage, extra in links.items():
        link = {"run_id": uuid.uuid4().hex, "experiment_id": "0", **extra}
        (root / "runs" / f"{stage}.json").write_text(json.dumps(link))
    (root / "params.yaml").write_text(yaml.safe_dump(
        {"register": {"model_name": model_name}, "tracking": {"experiment": experiment}}))
    return ["--params", "params.yaml", "--generator", "models/generator.pt",
            "--eval-metrics", "metrics/evaluate.json",
            "--upstream", "prepare=runs/prepare.json", "classifier=runs/classifier.json",
            "train=runs/train.json", "evaluate=runs/evaluate.json",
            "--out", "runs/register.json", "--metrics", "metrics/register.json"]


def run_register_stage(root: Path, args: list[str], tracking_uri: str) -> subprocess.CompletedProcess:
    """`python pipelines/register.py ARGS` in `root` (a scratch directory, not the repo)."""
    return subprocess.run([sys.executable, str(REPO_ROOT / "pipelines" / "register.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=300,
                          env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri))
