"""The train stage's driver side: start or attach to Ray, fit, and turn the last checkpoint
into the shipped generator. Both the Ray path and the Ray-free local path end in `TrainOutcome`."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganmodel.config import TrainParams
from ganmodel.errors import GanModelError


@dataclass
class TrainOutcome:
    generator: dict[str, torch.Tensor]  # state dict of the generator to ship (EMA if enabled)
    fixed_noise: torch.Tensor
    history: list[dict[str, float]]
    wall_time_s: float
    checkpoint_path: str | None = None

    @property
    def steady_images_per_sec(self) -> float:
        """Median images/s over epochs after the first (warm-up excluded)."""
        rates = [h["images_per_sec"] for h in self.history[1:]] or [
            h["images_per_sec"] for h in self.history]
        return statistics.median(rates) if rates else 0.0


def code_hash() -> str:
    """Hash of the code that shapes training (loop, networks, losses): a code change must start
    a fresh Ray run instead of resuming checkpoints written by the old code."""
    root = Path(__file__).resolve().parents[1]
    files = sorted([*root.joinpath("training").glob("*.py"), *root.joinpath("networks").glob("*.py"),
                    root / "losses.py"])
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


# Keys that say where and how robustly a run executes, not what it computes: changing them must
# not orphan the checkpoints of a run in progress.
RUN_NAME_EXCLUDES = {"ray_address", "storage_path", "max_failures", "keep_checkpoints", "checkpoint_every"}
RAY_RUN_TAG = "ray.run_name"  # MLflow tags on the train run: what a re-run looks up to continue it
RAY_STORAGE_TAG = "ray.storage_path"


def run_name(cfg: TrainParams, data_hash: str) -> str:
    """Deterministic Ray run name: re-running the same config on the same data with the same code
    (e.g. after the stage was killed) resumes that run's last checkpoint."""
    key = json.dumps({"train": cfg.model_dump(exclude=RUN_NAME_EXCLUDES),
                      "data": data_hash, "code": code_hash()}, sort_keys=True)
    return "train-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def storage_uri(path: str) -> str:
    """Absolute local path, or a URI (s3://, gs://, ...) unchanged."""
    return path if "://" in path else str(Path(path).absolute())


def ray_run_tags(cfg: TrainParams, data_hash: str) -> dict[str, str]:
    """The Ray run a train stage executes as (its checkpoints live in `storage/name`)."""
    return {RAY_RUN_TAG: run_name(cfg, data_hash), RAY_STORAGE_TAG: storage_uri(cfg.storage_path)}


EPOCH_METRIC = "d_loss"  # logged by rank 0 at every epoch: which epochs a run already holds
BACKFILLED_TAG = "metrics.backfilled_epochs"


def backfill_history(client: Any, run_id: str, history: list[dict[str, float]]) -> list[int]:
    """Log the per-epoch metrics of `history` (from the final checkpoint) that the MLflow run lacks;
    return those epochs. A fresh run whose Ray run had already trained (e.g. `dvc repro -f` with an
    unchanged config: the deterministic result is reused from the checkpoint) or had trained part of
    the way under another MLflow run would otherwise miss those epochs' curves."""
    import time as _time

    from mlflow.entities import Metric

    logged = {m.step for m in client.get_metric_history(run_id, EPOCH_METRIC)}
    missing = [h for h in history if int(h["epoch"]) not in logged]
    ts = int(_time.time() * 1000)
    batch = [Metric(k, float(v), ts, int(h["epoch"])) for h in missing for k, v in h.items()
             if k != "epoch" and isinstance(v, int | float)]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i:i + 1000], synchronous=True)
    epochs = [int(h["epoch"]) for h in missing]
    if epochs:
        client.set_tag(run_id, BACKFILLED_TAG, ",".join(map(str, epochs)))
    return epochs


def outcome_from_state(sd: dict[str, Any], wall: float, ckpt: str | None = None) -> TrainOutcome:
    gen = sd["ema"] if sd.get("ema") else sd["g"]
    return TrainOutcome(gen, sd["fixed_noise"], list(sd.get("history", [])), wall, ckpt)


def worker_user_error(err: BaseException) -> BaseException:
    """A `GanModelError` raised on a worker (bad input, e.g. a missing split) as itself, so the
    stage prints one line instead of Ray's multi-rank traceback; anything else unchanged."""
    failures = getattr(err, "worker_failures", None) or {}
    for rank, exc in sorted(failures.items()):
        if isinstance(exc, GanModelError):
            return GanModelError(f"train worker rank {rank}: {exc}")
    return err


def run_ray(cfg: TrainParams, train_images: str, run_id: str | None, tracking_uri: str | None,
            data_hash: str, eval_stats: str | None = None, classifier: str | None = None,
            log_params=None) -> TrainOutcome:
    """Train with Ray Train's TorchTrainer and return the outcome from the final checkpoint."""
    from ganmodel.training.checkpoint import load_checkpoint
    from ganmodel.training.loop import Context
    from ganmodel.training.ray_runner import (
        JobSpec,
        check_resources,
        check_shared_storage,
        init_ray,
        run_trainer,
        ship_inputs,
    )

    t0 = time.perf_counter()
    init_ray(cfg)
    check_resources(cfg)
    spec = JobSpec(cfg.model_dump(mode="json"), str(Path(train_images).absolute()), run_id,
                   tracking_uri, eval_stats, classifier, code_hash())
    name = run_name(cfg, data_hash)
    storage = storage_uri(cfg.storage_path)
    check_shared_storage(storage)
    spec = ship_inputs(spec)
    if log_params:
        log_params({RAY_RUN_TAG: name, RAY_STORAGE_TAG: storage})
    try:
        result = run_trainer(spec, cfg, storage, name)
        if result.error is not None:
            raise result.error
    except Exception as err:  # Ray raises from fit(), or hands the error back in the result
        if (user := worker_user_error(err)) is err:
            raise
        raise user from None
    if result.checkpoint is None:
        raise GanModelError("train: Ray Train finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        sd = load_checkpoint(d, Context())
    return outcome_from_state(sd, time.perf_counter() - t0, result.checkpoint.path)


def run_local(cfg: TrainParams, images: torch.Tensor, device: str = "cpu", tracker=None,
              evaluate=None) -> TrainOutcome:
    """The same loop in this process, without Ray (tests, GPU benchmarks)."""
    from ganmodel.training.checkpoint import state_dict
    from ganmodel.training.loop import Context, train

    t0 = time.perf_counter()
    state = train(cfg, images, Context(device=torch.device(device)), tracker, evaluate=evaluate)
    return outcome_from_state(state_dict(state), time.perf_counter() - t0)
