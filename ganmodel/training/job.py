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


def run_name(cfg: TrainParams, data_hash: str) -> str:
    """Deterministic Ray run name: a re-run of the same config resumes the same run's checkpoints."""
    key = json.dumps({"train": cfg.model_dump(exclude={"ray_address", "storage_path", "max_failures"}),
                      "data": data_hash}, sort_keys=True)
    return "train-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def storage_uri(path: str) -> str:
    """Absolute local path, or a URI (s3://, gs://, ...) unchanged."""
    return path if "://" in path else str(Path(path).absolute())


def outcome_from_state(sd: dict[str, Any], wall: float, ckpt: str | None = None) -> TrainOutcome:
    gen = sd["ema"] if sd.get("ema") else sd["g"]
    return TrainOutcome(gen, sd["fixed_noise"], list(sd.get("history", [])), wall, ckpt)


def run_ray(cfg: TrainParams, train_images: str, run_id: str | None, tracking_uri: str | None,
            data_hash: str, eval_stats: str | None = None, classifier: str | None = None,
            log_params=None) -> TrainOutcome:
    """Train with Ray Train's TorchTrainer and return the outcome from the final checkpoint."""
    from ganmodel.training.checkpoint import load_checkpoint
    from ganmodel.training.loop import Context
    from ganmodel.training.ray_runner import JobSpec, check_resources, init_ray, run_trainer

    t0 = time.perf_counter()
    init_ray(cfg)
    check_resources(cfg)
    spec = JobSpec(cfg.model_dump(mode="json"), str(Path(train_images).absolute()), run_id,
                   tracking_uri, eval_stats, classifier)
    name = run_name(cfg, data_hash)
    storage = storage_uri(cfg.storage_path)
    if log_params:
        log_params({"ray.run_name": name, "ray.storage_path": storage})
    result = run_trainer(spec, cfg, storage, name)
    if result.error is not None:
        raise result.error
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
