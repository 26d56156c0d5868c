"""The train stage's driver side: start or attach to Ray, fit, and turn the last checkpoint
into the shipped generator. Both the Ray path and the Ray-free local path end in `TrainOutcome`."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
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
    fixed_labels: torch.Tensor | None = None  # conditional: the class of each fixed sample

    @property
    def steady_images_per_sec(self) -> float:
        """Median images/s over epochs after the first (warm-up excluded)."""
        rates = [h["images_per_sec"] for h in self.history[1:]] or [
            h["images_per_sec"] for h in self.history]
        return statistics.median(rates) if rates else 0.0


RAY_RUN_TAG = "ray.run_name"  # MLflow tags on the train run: what a re-run looks up to continue it
RAY_STORAGE_TAG = "ray.storage_path"


def storage_uri(path: str) -> str:
    """Absolute local path, or a URI (s3://, gs://, ...) unchanged."""
    return path if "://" in path else str(Path(path).absolute())


def ray_run_tags(cfg: TrainParams, run_name: str) -> dict[str, str]:
    """The Ray run a train stage executes as (its checkpoints live in `storage/name`)."""
    return {RAY_RUN_TAG: run_name, RAY_STORAGE_TAG: storage_uri(cfg.storage_path)}


def outcome_from_state(sd: dict[str, Any], wall: float, ckpt: str | None = None) -> TrainOutcome:
    gen = sd["ema"] if sd.get("ema") else sd["g"]
    return TrainOutcome(gen, sd["fixed_noise"], list(sd.get("history", [])), wall, ckpt,
                        sd.get("fixed_labels"))


def check_labels_fit(cfg: TrainParams, meta: dict[str, Any], prepared: str) -> None:
    """A conditional recipe needs labelled data of at least 2 classes; a one-class (unlabelled)
    prepared set fails here, before Ray starts, naming the key that chose it."""
    classes = meta.get("classes") or []
    if not cfg.conditional or (len(classes) >= 2 and meta.get("labelled", True)):
        return
    key = f"train.preset {cfg.preset}" if cfg.preset != "custom" else "train.conditional true"
    plain = cfg.preset.replace("_cond", "")  # conv_sn_cond -> conv_sn, conv_sn_cond_da -> conv_sn_da
    fix = (f"use train.preset {plain} (the same recipe, unconditional)" if cfg.preset != "custom"
           else "set train.conditional: false")
    raise GanModelError(f"{key} asks for a conditional generator, but {prepared} has {len(classes)} "
                        f"class{'es' if len(classes) != 1 else ''} (unlabelled images): {fix}")


def worker_user_error(err: BaseException) -> BaseException:
    """A `GanModelError` raised on a worker (bad input, e.g. a missing split) as itself, so the
    stage prints one line instead of Ray's multi-rank traceback; anything else unchanged."""
    failures = getattr(err, "worker_failures", None) or {}
    for rank, exc in sorted(failures.items()):
        if isinstance(exc, GanModelError):
            return GanModelError(f"train worker rank {rank}: {exc}")
    return err


def data_loading(mode: str, train_dir: str | Path, log: Callable[[str], None] = print,
                 class_sampling: str = "data") -> str:
    """`train.data_loading` resolved for the prepared train split in `train_dir`; a re-sampling
    `class_sampling` (sqrt, balanced) is refused here, before any worker starts, if it streams."""
    from ganmodel.data.shards import ShardReader
    from ganmodel.data.stream import AUTO_STREAM_BYTES, resolve_loading

    d = Path(train_dir)
    reader = ShardReader(d.parent, d.name)
    resolved = resolve_loading(mode, reader.nbytes)
    mib = 2**20
    why = (f"{reader.nbytes / mib:.0f} MiB of pixels, auto streams above {AUTO_STREAM_BYTES / mib:.0f} MiB"
           if mode == "auto" else "train.data_loading")
    log(f"data loading: {resolved} ({len(reader)} images in {len(reader.files)} shards; {why})")
    if resolved == "stream" and class_sampling in ("sqrt", "balanced"):
        raise GanModelError(f"train.class_sampling: {class_sampling} needs the train split in memory, "
                            f"but train.data_loading {mode} streams it ({why}); set it to auto or data")
    return resolved


def run_ray(cfg: TrainParams, train_images: str, run_name: str, *, run_id: str | None = None,
            tracking_uri: str | None = None, classifier: str | None = None,
            n_classes: int = 0) -> TrainOutcome:
    """Train with Ray Train's TorchTrainer as Ray run `run_name` (see `training.identity`) and
    return the outcome from the final checkpoint. `classifier` enables the in-training FID."""
    from ganmodel.training.checkpoint import load_checkpoint
    from ganmodel.training.cluster import (
        DATA_CPUS,
        check_resources,
        check_shared_input,
        check_shared_storage,
        init_ray,
    )
    from ganmodel.training.identity import package_hash
    from ganmodel.training.ray_runner import JobSpec, run_trainer, ship_inputs
    from ganmodel.training.state import Context

    t0 = time.perf_counter()
    loading = data_loading(cfg.data_loading, train_images, class_sampling=cfg.class_sampling)
    data_cpus = DATA_CPUS if loading == "stream" else 0
    init_ray(cfg, data_cpus)
    check_resources(cfg, data_cpus=data_cpus)
    if loading == "stream":
        from ganmodel.data.shards import shard_files

        d = Path(train_images)
        check_shared_input(str(shard_files(d.parent, d.name)[0].absolute()), "train.data_loading")
    spec = JobSpec(cfg.model_dump(mode="json"), str(Path(train_images).absolute()), run_id, tracking_uri,
                   str(Path(classifier).absolute()) if classifier else None, package_hash(), n_classes,
                   data_loading=loading)
    storage = storage_uri(cfg.storage_path)
    check_shared_storage(storage)
    spec = ship_inputs(spec)
    try:
        result = run_trainer(spec, cfg, storage, run_name)
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


def run_local(cfg: TrainParams, images: Any, device: str = "cpu", tracker=None,
              evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
              labels: torch.Tensor | None = None, n_classes: int = 0) -> TrainOutcome:
    """The same loop in this process, without Ray (tests, GPU benchmarks). `images`: a uint8
    tensor [N, C, H, W], or a `training.batches.BatchSource` that streams."""
    from ganmodel.training.loop import train
    from ganmodel.training.state import Context, state_dict

    t0 = time.perf_counter()
    state = train(cfg, images, Context(device=torch.device(device)), tracker, evaluate=evaluate,
                  labels=labels, n_classes=n_classes)
    return outcome_from_state(state_dict(state), time.perf_counter() - t0)
