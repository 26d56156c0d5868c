"""What runs inside one Ray Tune trial: the pipeline's training loop (`training.loop.train`) on the
prepared data, scored by the quick FID of every epoch against the pipeline's classifier.

A trial of one worker runs the loop in the trial's own actor and reports each epoch with
`ray.tune.report` (with a checkpoint when one is due, so Tune's retries and `--resume` continue
from it). A trial of more workers builds its own `TorchTrainer` (`ray_runner.run_trainer`, the
train stage's `_worker_loop`, DDP) whose rank 0 reports to Tune through `TuneReportCallback`; the
Train run is named after the trial, so a restarted trial resumes its checkpoints.

Either way the trial's rank 0 logs live into the trial's MLflow child run (`MlflowTracker`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from ganmodel.config import TrainParams
from ganmodel.tracking.sweeps import SweepRun, open_trial_run
from ganmodel.training.ray_runner import JobSpec

TRIAL_KEY = "trial"  # the Tune config key holding a `space.Trial` as a dict


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares, as plain data (`tune.with_parameters` ships it once)."""

    job: JobSpec  # inputs shipped through the object store; `train` and `run_id` set per trial
    sweep: SweepRun
    name: str  # the sweep's name
    storage: str  # where a multi-worker trial's TorchTrainer keeps its checkpoints
    experiment: str  # the Tune experiment (names the trials' Train runs)


def train_run_name(setup: TrialSetup, index: int) -> str:
    """The Ray Train run of a multi-worker trial: unique per sweep experiment and trial."""
    return f"{setup.experiment}-trial-{index:03d}"


def _open_run(setup: TrialSetup, trial: dict[str, Any]) -> str:
    params = {"override": trial["overrides"], "train": trial["train"]}
    return open_trial_run(setup.sweep, setup.name, int(trial["index"]), params, {})


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune function trainable: train one sampled configuration, reporting every epoch."""
    trial = config[TRIAL_KEY]
    spec = dataclasses.replace(setup.job, train=trial["train"], run_id=_open_run(setup, trial))
    cfg = TrainParams(**spec.train)
    if cfg.num_workers == 1:
        _in_this_actor(spec, cfg)
    else:
        _with_torch_trainer(spec, cfg, setup.storage, train_run_name(setup, int(trial["index"])))


def _in_this_actor(spec: JobSpec, cfg: TrainParams) -> None:
    import ray.tune as tune
    import torch

    from ganmodel.tracking.tracker import MlflowTracker
    from ganmodel.training.checkpoint import epoch_reporter, load_checkpoint
    from ganmodel.training.loop import train
    from ganmodel.training.ray_runner import (
        EPOCH_HOOKS_ENV,
        _quiet_worker_logs,
        check_worker_code,
        epoch_hooks,
        load_job_inputs,
        placement_tags,
        worker_placement,
    )
    from ganmodel.training.state import Context

    # Tune gives a GPU trial its device through CUDA_VISIBLE_DEVICES: it is device 0 here.
    ctx = Context(device=torch.device("cuda", 0) if cfg.use_gpu else torch.device("cpu"))
    _quiet_worker_logs()
    check_worker_code(spec.code_hash)
    hooks = epoch_hooks(os.environ.get(EPOCH_HOOKS_ENV))
    if ctx.device.type == "cpu":
        torch.set_num_threads(cfg.cpus_per_worker or 1)
    data, labels, evaluate = load_job_inputs(spec, cfg, ctx)
    tracker = MlflowTracker(spec.run_id, spec.tracking_uri)
    tracker.set_tags(placement_tags([worker_placement(ctx)]))
    resume = None
    if (ckpt := tune.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            resume = load_checkpoint(d, ctx)
    report = epoch_reporter(ctx, tune.report, tune.Checkpoint, hooks)
    train(cfg, data, ctx, tracker, report, resume, evaluate, labels=labels, n_classes=spec.n_classes)


def _with_torch_trainer(spec: JobSpec, cfg: TrainParams, storage: str, run_name: str) -> None:
    from ray.tune.integration.ray_train import TuneReportCallback

    from ganmodel.training.job import worker_user_error
    from ganmodel.training.ray_runner import run_trainer

    result = run_trainer(spec, cfg, storage, run_name, callbacks=[TuneReportCallback()])
    if result.error is not None:
        raise worker_user_error(result.error)

