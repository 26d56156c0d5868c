"""Thin Ray Train adapter around `loop.train`: one `TorchTrainer` (Train V2 API), N workers,
DDP over gloo (CPU) or NCCL (GPU); per-epoch `ray.train.report` with a state-dict checkpoint.

Only rank 0 logs to MLflow, into a run the stage created on the driver, so a retried worker
group keeps logging into the same run instead of opening a second one.

What the cluster must offer, and the checks before fitting, are in `ganmodel.training.cluster`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganmodel.config import TrainParams
from ganmodel.errors import GanModelError, brief
from ganmodel.training.cluster import cpus_per_worker, resolve_address

# Extension point: `module:function` names (comma-separated) that every worker imports and calls
# as `hook(epoch, rank)` after each epoch's report, e.g. to alert on a metric, or (the test suite's
# tests/faults.py) to make a worker fail or stall at a known point.
EPOCH_HOOKS_ENV = "GANMODEL_EPOCH_HOOKS"
PLACEMENT_TAG = "placement"  # MLflow tags placement.nodes, placement.rank<r>


@dataclass(frozen=True)
class JobSpec:
    """What the workers need, as plain data (it crosses process boundaries)."""

    train: dict[str, Any]
    train_images: str  # absolute path of the prepared train split (its directory of shards)
    run_id: str | None
    tracking_uri: str | None
    classifier: str | None = None  # the evaluation classifier: enables the in-training FID
    code_hash: str | None = None  # the driver's `identity.package_hash()`: workers must run the same code
    n_classes: int = 0  # classes of the prepared data (a conditional run needs them)
    # The files above as object refs of their bytes (`ship_inputs`): a worker on another node does
    # not see the driver's disk. Keyed by the field name; a missing key means "read the path".
    inputs: dict[str, Any] = field(default_factory=dict)
    # `memory`: every worker gets the train split's bytes and holds it whole; `stream`: Ray Data
    # reads its shards where they are (`ganmodel.training.ray_data`). Resolved on the driver.
    data_loading: str = "memory"


INPUT_FIELDS = ("train_images", "classifier")


def ship_inputs(spec: JobSpec) -> JobSpec:
    """Put the driver's input files (the train split's shards, unless it streams, and the classifier
    of the in-training FID) into Ray's object store, so workers on any node get the same bytes."""
    import ray

    from ganmodel.data.shards import shard_files

    inputs: dict[str, Any] = {}
    for name in INPUT_FIELDS:
        streamed = name == "train_images" and spec.data_loading == "stream"  # Ray Data reads it in place
        if (path := getattr(spec, name)) is None or streamed:
            continue
        p = Path(path)
        if p.is_dir():
            inputs[name] = [(f.name, ray.put(f.read_bytes())) for f in shard_files(p.parent, p.name)]
        elif p.is_file():
            inputs[name] = ray.put(p.read_bytes())
        else:
            raise GanModelError(f"{p}: input of the train stage not found")
    return dataclasses.replace(spec, inputs=inputs)


def input_path(spec: JobSpec, name: str, tmp_dir: str) -> str:
    """A local path with the content of input `name`: the shipped bytes written under `tmp_dir`
    (same file or directory name, so loaders' messages still say which), or the driver's path."""
    if name not in spec.inputs:
        return getattr(spec, name)
    import ray

    local = Path(tmp_dir) / Path(getattr(spec, name)).name
    shipped = spec.inputs[name]
    if isinstance(shipped, list):  # a directory of shards, written (and later read) one at a time
        local.mkdir()
        for file_name, ref in shipped:
            (local / file_name).write_bytes(ray.get(ref))
    else:
        local.write_bytes(ray.get(shipped))
    return str(local)


def _quiet_worker_logs() -> None:
    """Ray Train logs two INFO lines per rank per report ("Checkpoint successfully created",
    "Reporting training result ..."); rank 0's progress line already says the same, once.

    The second comes from a logger named by its module's file path (`getLogger(__file__)` in
    ray/train/v2/_internal/execution/context.py), which neither the `ray.train` logger's level nor
    RunConfig's LoggingConfig reaches, so loggers named by a path under ray/train are quieted too.
    """
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    marker = f"{os.sep}ray{os.sep}train{os.sep}"
    for name in list(logging.Logger.manager.loggerDict):
        if marker in name:
            logging.getLogger(name).setLevel(logging.WARNING)


def epoch_hooks(spec: str | None) -> list[Callable[[int, int], None]]:
    """The functions named in `GANMODEL_EPOCH_HOOKS` (see `EPOCH_HOOKS_ENV`)."""
    import importlib

    hooks = []
    for name in filter(None, (s.strip() for s in (spec or "").split(","))):
        module, sep, attr = name.partition(":")
        try:
            hooks.append(getattr(importlib.import_module(module), attr) if sep else None)
        except (ImportError, AttributeError) as err:
            raise GanModelError(f"{EPOCH_HOOKS_ENV}: cannot import {name!r} ({brief(err)})") from None
        if hooks[-1] is None or not callable(hooks[-1]):
            raise GanModelError(f"{EPOCH_HOOKS_ENV}: {name!r} is not a module:function name")
    return hooks


def load_job_inputs(spec: JobSpec, cfg: TrainParams, ctx, dataset_shard: Any = None
                    ) -> tuple[Any, Any, Any]:
    """(training data, its labels, the quick FID or None) from the job's inputs.

    The data is the train split as a tensor (`memory`, labels beside it), or a `BatchSource` that
    streams it (`stream`, labels inside): this worker's Ray Data shard where the job has one
    (`dataset_shard`), else the shards read without Ray. The quick FID runs on rank 0 with
    `train.eval_every` and a classifier, on the train split's images and labels."""
    from ganmodel.data.shards import ShardReader

    with tempfile.TemporaryDirectory(prefix="ganmodel-inputs-") as tmp:
        train_dir = Path(input_path(spec, "train_images", tmp))
        reader = ShardReader(train_dir.parent, train_dir.name)
        labels = None
        if spec.data_loading == "stream":
            data = _stream_source(reader, dataset_shard, cfg, ctx)
        else:
            data, labels = reader.read()
        evaluate = None
        if ctx.is_main and cfg.eval_every and spec.classifier:
            from ganmodel.evaluation.quick import QuickFID

            clf = input_path(spec, "classifier", tmp)
            # Streaming: the real statistics are accumulated from the shards, batch by batch.
            evaluate = QuickFID(clf, reader if labels is None else data, cfg.eval_samples, ctx.device,
                                real_labels=labels)
    return data, labels, evaluate


def _stream_source(reader: Any, dataset_shard: Any, cfg: TrainParams, ctx) -> Any:
    if dataset_shard is None:
        from ganmodel.training.batches import ShardBatches

        return ShardBatches(reader, cfg.batch_size, cfg.seed, ctx.rank, ctx.world_size, ctx.device)
    from ganmodel.training.ray_data import RayDataBatches

    return RayDataBatches(dataset_shard, len(reader), reader.image_shape, reader.labels(), cfg.batch_size,
                          cfg.seed, ctx.rank, ctx.world_size, ctx.device)


def _worker_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch
    import torch

    from ganmodel.tracking.tracker import MlflowTracker, NullTracker
    from ganmodel.training.checkpoint import epoch_reporter, load_checkpoint
    from ganmodel.training.loop import train
    from ganmodel.training.state import Context

    _quiet_worker_logs()
    spec = JobSpec(**config)
    cfg = TrainParams(**spec.train)
    rctx = ray.train.get_context()
    ctx = Context(rctx.get_world_rank(), rctx.get_world_size(), ray.train.torch.get_device())
    check_worker_code(spec.code_hash)
    hooks = epoch_hooks(os.environ.get(EPOCH_HOOKS_ENV))
    if ctx.device.type == "cpu":
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    shard = None
    if spec.data_loading == "stream":
        from ganmodel.training.ray_data import DATASET

        shard = ray.train.get_dataset_shard(DATASET)
    data, labels, evaluate = load_job_inputs(spec, cfg, ctx, shard)
    tracker = (MlflowTracker(spec.run_id, spec.tracking_uri)
               if ctx.is_main and spec.run_id else NullTracker())
    placement = gather_placement(ctx)
    if ctx.is_main:
        print("placement: " + "; ".join(
            f"rank {p['rank']} on node {p['node_id'][:12]} ({p['node_ip']}, {p['host']}, {p['device']})"
            for p in placement))
        tracker.set_tags({**placement_tags(placement), "data_loading.resolved": spec.data_loading})
    resume = None
    if (ckpt := ray.train.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            resume = load_checkpoint(d, ctx)

    report = epoch_reporter(ctx, ray.train.report, ray.train.Checkpoint, hooks)
    train(cfg, data, ctx, tracker, report, resume, evaluate,
          log=print if ctx.is_main else (lambda _msg: None), labels=labels, n_classes=spec.n_classes)


def check_worker_code(expected: str | None) -> None:
    """Refuse to train with other code than the driver's: the run name (and so which checkpoints a
    run resumes) is derived from the driver's code."""
    from ganmodel.training.identity import package_hash

    if expected and (mine := package_hash()) != expected:
        import ganmodel

        raise GanModelError(
            f"this Ray worker imports ganmodel from {Path(ganmodel.__file__).parent} whose training code "
            f"(hash {mine[:12]}) differs from the driver's ({expected[:12]}); install the same version "
            f"on every node"
        )


def worker_placement(ctx) -> dict[str, Any]:
    """Where this worker runs: its rank, Ray node, node IP, host name and torch device."""
    import socket

    import ray

    return {"rank": ctx.rank, "node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
            "device": str(ctx.device)}


def gather_placement(ctx) -> list[dict[str, Any]]:
    """Every rank's `worker_placement`, gathered on all ranks (one small collective at start)."""
    import torch
    import torch.distributed as dist

    mine = worker_placement(ctx)
    if ctx.world_size == 1 or not dist.is_initialized():
        return [mine]
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)  # all_gather_object over NCCL uses the current device
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, mine)
    return sorted(out, key=lambda p: p["rank"])


def placement_tags(placement: list[dict[str, Any]]) -> dict[str, str]:
    """MLflow tags describing where the ranks ran. Tags, not params: a retried or resumed worker
    group may land on other nodes, and MLflow params cannot change once logged."""
    tags = {f"{PLACEMENT_TAG}.nodes": str(len({p["node_id"] for p in placement}))}
    for p in placement:
        tags[f"{PLACEMENT_TAG}.rank{p['rank']}"] = f"{p['node_id']} {p['node_ip']} {p['host']} {p['device']}"
    return tags


def run_trainer(spec: JobSpec, cfg: TrainParams, storage_path: str, run_name: str,
                callbacks: list[Any] | None = None):
    """Fit a `TorchTrainer`; returns Ray's `Result` (its `checkpoint` is the last one). `callbacks`
    are Ray Train user callbacks (a sweep trial passes Tune's `TuneReportCallback`)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    cpus = cpus_per_worker(cfg, resolve_address(cfg))
    datasets = None
    if spec.data_loading == "stream":
        from ganmodel.training.ray_data import DATASET, train_dataset

        train_dir = Path(spec.train_images)
        datasets = {DATASET: train_dataset(str(train_dir.parent), cfg.seed, train_dir.name)}
    trainer = TorchTrainer(
        _worker_loop,
        datasets=datasets,
        train_loop_config=spec.__dict__,
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            callbacks=callbacks,
        ),
    )
    return trainer.fit()
