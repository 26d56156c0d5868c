"""Thin Ray Train adapter around `loop.train`: one `TorchTrainer` (Train V2 API), N workers,
DDP over gloo (CPU) or NCCL (GPU); per-epoch `ray.train.report` with a state-dict checkpoint.

Only rank 0 logs to MLflow, into a run the stage created on the driver, so a retried worker
group keeps logging into the same run instead of opening a second one.

Before fitting, the driver refuses what can never work instead of waiting forever: more workers
than the alive nodes can place (`check_resources`), and on a multi-node cluster a local
`storage_path` that some node cannot read (`check_shared_storage`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganmodel.config import TrainParams
from ganmodel.errors import GanModelError, brief

# Quieter, deterministic Ray defaults (see shared notes); users can still override each.
RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    # The controller polls workers at this interval and `ray.train.report` waits for it:
    # 2 s by default (~1.7 s per report measured), 0.1 s brings a report down to ~0.16 s.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
}
# Extension point: `module:function` names (comma-separated) that every worker imports and calls
# as `hook(epoch, rank)` after each epoch's report, e.g. to alert on a metric, or (the test suite's
# tests/faults.py) to make a worker fail or stall at a known point.
EPOCH_HOOKS_ENV = "GANMODEL_EPOCH_HOOKS"
# Set on clusters whose autoscaler adds nodes on demand: the resource check then only warns, since
# the nodes that will host the workers may not exist yet.
AUTOSCALING_ENV = "GANMODEL_AUTOSCALING"
PLACEMENT_TAG = "placement"  # MLflow tags placement.nodes, placement.rank<r>


@dataclass(frozen=True)
class JobSpec:
    """What the workers need, as plain data (it crosses process boundaries)."""

    train: dict[str, Any]
    train_images: str  # absolute path of the prepared train split
    run_id: str | None
    tracking_uri: str | None
    classifier: str | None = None  # the evaluation classifier: enables the in-training FID
    code_hash: str | None = None  # the driver's `identity.package_hash()`: workers must run the same code
    n_classes: int = 0  # classes of the prepared data (a conditional run needs them)
    # The files above as object refs of their bytes (`ship_inputs`): a worker on another node does
    # not see the driver's disk. Keyed by the field name; a missing key means "read the path".
    inputs: dict[str, Any] = field(default_factory=dict)


INPUT_FIELDS = ("train_images", "classifier")


def ship_inputs(spec: JobSpec) -> JobSpec:
    """Put the driver's input files (the train split, and the classifier of the in-training FID)
    into Ray's object store, so workers on any node get the same bytes."""
    import ray

    inputs = {}
    for name in INPUT_FIELDS:
        if (path := getattr(spec, name)) is not None:
            p = Path(path)
            if not p.is_file():
                raise GanModelError(f"{p}: input file of the train stage not found")
            inputs[name] = ray.put(p.read_bytes())
    return dataclasses.replace(spec, inputs=inputs)


def input_path(spec: JobSpec, name: str, tmp_dir: str) -> str:
    """A local path with the content of input `name`: the shipped bytes written under `tmp_dir`
    (same file name, so loaders' messages still say which file), or the driver's path."""
    if name not in spec.inputs:
        return getattr(spec, name)
    import ray

    local = Path(tmp_dir) / Path(getattr(spec, name)).name
    local.write_bytes(ray.get(spec.inputs[name]))
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


def load_job_inputs(spec: JobSpec, cfg: TrainParams, ctx) -> tuple[Any, Any]:
    """(the train split, the quick FID or None) from the job's inputs: the FID only on rank 0 with
    `train.eval_every` and a classifier, built on the train split's images and labels."""
    from ganmodel.data.prepared import load_split

    with tempfile.TemporaryDirectory(prefix="ganmodel-inputs-") as tmp:
        train_file = Path(input_path(spec, "train_images", tmp))
        split = load_split(train_file.parent, train_file.stem)
        evaluate = None
        if ctx.is_main and cfg.eval_every and spec.classifier:
            from ganmodel.evaluation.quick import QuickFID

            evaluate = QuickFID(input_path(spec, "classifier", tmp), split.images, cfg.eval_samples,
                                ctx.device, real_labels=split.labels)
    return split, evaluate


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
    split, evaluate = load_job_inputs(spec, cfg, ctx)
    images = split.images
    tracker = (MlflowTracker(spec.run_id, spec.tracking_uri)
               if ctx.is_main and spec.run_id else NullTracker())
    placement = gather_placement(ctx)
    if ctx.is_main:
        print("placement: " + "; ".join(
            f"rank {p['rank']} on node {p['node_id'][:12]} ({p['node_ip']}, {p['host']}, {p['device']})"
            for p in placement))
        tracker.set_tags(placement_tags(placement))
    resume = None
    if (ckpt := ray.train.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            resume = load_checkpoint(d, ctx)

    report = epoch_reporter(ctx, ray.train.report, ray.train.Checkpoint, hooks)
    train(cfg, images, ctx, tracker, report, resume, evaluate,
          log=print if ctx.is_main else (lambda _msg: None), labels=split.labels, n_classes=spec.n_classes)


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


def resolve_address(cfg: TrainParams) -> str | None:
    return cfg.ray_address or os.environ.get("RAY_ADDRESS") or None


def apply_ray_env_defaults() -> None:
    """Export `RAY_ENV_DEFAULTS` (user settings win). Call it before anything imports `ray`: Ray
    reads some of its environment once, at import."""
    for k, v in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)


JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray Jobs (and so KubeRay RayJob) for the driver


def runtime_env_for(address: str | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """The driver's runtime env. Workers on an existing cluster inherit neither this process's
    environment nor its code: pass the MLflow/ganmodel/Ray Train variables, and ship this checkout's
    `ganmodel` package (Ray puts it first on the workers' sys.path, so they run the driver's code
    whatever version the nodes' image holds). Under a Ray Job (`ray job submit`, a KubeRay RayJob)
    the job's own runtime env wins: Ray refuses to merge two that set the same field or variable."""
    env = {k: v for k, v in environ.items() if k.startswith(("MLFLOW_", "GANMODEL_", "RAY_TRAIN_"))}
    job_env: dict[str, Any] = {}
    if raw := environ.get(JOB_CONFIG_ENV):
        try:
            job_env = json.loads(raw).get("runtime_env") or {}
        except (json.JSONDecodeError, AttributeError):
            job_env = {}
    taken = set(job_env.get("env_vars") or {})
    runtime_env: dict[str, Any] = {"env_vars": {k: v for k, v in env.items() if k not in taken}}
    if address is not None and not {"py_modules", "working_dir"} & set(job_env):
        import ganmodel

        runtime_env["py_modules"] = [ganmodel]
    return runtime_env


def init_ray(cfg: TrainParams) -> None:
    """Attach to `train.ray_address` / `RAY_ADDRESS`, or start a local instance."""
    apply_ray_env_defaults()
    import ray

    if ray.is_initialized():
        return
    address = resolve_address(cfg)
    kwargs: dict[str, Any] = {"runtime_env": runtime_env_for(address, os.environ)}
    if address is None:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, 1)
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as err:
        raise GanModelError(
            f"train.ray_address: cannot reach Ray cluster at {address!r} ({brief(err)})") from None


def _alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def cpus_per_worker(cfg: TrainParams, address: str | None = None) -> int:
    """CPUs each worker reserves (and so its torch threads: Ray sets OMP_NUM_THREADS from it):
    `train.cpus_per_worker`, else on a local instance this machine's CPUs shared out among the
    workers (one worker gets them all: on one machine a single process with every core trains
    faster than gloo DDP between processes), else 1 on an existing cluster."""
    if cfg.cpus_per_worker is not None:
        return cfg.cpus_per_worker
    if address is None:
        return max(1, (os.cpu_count() or 1) // cfg.num_workers)
    return 1


def placeable_workers(nodes: list[dict[str, Any]], use_gpu: bool, cpus: int = 1) -> int:
    """How many workers (`cpus` CPUs each, plus 1 GPU each with `use_gpu`) the nodes can host at
    once. Per node, not cluster totals: a worker cannot take its CPU from one node and its GPU
    from another."""
    total = 0
    for n in nodes:
        res = n.get("Resources", {})
        slots = int(res.get("CPU", 0) + 1e-9) // cpus
        if use_gpu:
            slots = min(slots, int(res.get("GPU", 0) + 1e-9))
        total += slots
    return total


def check_resources(cfg: TrainParams, nodes: list[dict[str, Any]] | None = None,
                    keys: tuple[str, str] = ("train.num_workers", "train.use_gpu")) -> None:
    """Refuse a request the cluster can never satisfy, instead of waiting forever. The error names
    `keys` (the params that ask for the workers, and for their GPUs).

    With `GANMODEL_AUTOSCALING=1` (an autoscaling cluster that adds nodes on demand) a shortfall
    only prints a warning, and Ray Train waits for the autoscaler.
    """
    nodes = _alive_nodes() if nodes is None else nodes
    per = cpus_per_worker(cfg, resolve_address(cfg))
    have = placeable_workers(nodes, cfg.use_gpu, per)
    if have >= cfg.num_workers:
        return
    cpus = sum(int(n.get("Resources", {}).get("CPU", 0)) for n in nodes)
    gpus = sum(int(n.get("Resources", {}).get("GPU", 0)) for n in nodes)
    what = f"{per} CPU{'s' if per > 1 else ''}" + (" and 1 GPU" if cfg.use_gpu else "")
    key = keys[1] if cfg.use_gpu and cfg.num_workers <= cpus else keys[0]
    msg = (f"{key}: {cfg.num_workers} workers need {what} each, but the Ray cluster's "
           f"{len(nodes)} node(s) ({cpus} CPUs, {gpus} GPUs) can host only {have}")
    if os.environ.get(AUTOSCALING_ENV, "").lower() in ("1", "true", "yes"):
        print(f"warning: {msg}; {AUTOSCALING_ENV} is set, waiting for the autoscaler")
        return
    raise GanModelError(msg + f" (set {AUTOSCALING_ENV}=1 on an autoscaling cluster)")


def is_uri(path: str) -> bool:
    """s3://, gs://, abfs://, hdfs://, ...: remote storage that every node reaches alike."""
    return "://" in path and not path.startswith("file://")


def _nodes_can_read(nodes: list[dict[str, Any]], marker: str, token: str, timeout: float) -> list[bool]:
    """For each node, run a task pinned to it (hard node affinity) that reads the marker file."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def read_marker(path: str) -> str | None:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return None

    refs = [read_marker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(marker) for n in nodes]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    for ref in pending:
        ray.cancel(ref, force=True)
    done = set(ready)
    return [ref in done and ray.get(ref) == token for ref in refs]


# (nodes, marker path, token, timeout) -> for each node, whether it read the token back.
NodeCheck = Callable[[list[dict[str, Any]], str, str, float], list[bool]]


def check_shared_storage(storage: str, nodes: list[dict[str, Any]] | None = None,
                         node_check: NodeCheck | None = None, timeout: float = 60.0) -> None:
    """On a multi-node cluster, refuse a local `storage_path` that is not the same directory on
    every node: workers write checkpoints there and the driver reads them back, so a path local to
    each node silently loses checkpoints (and resumes). The driver writes a marker file under the
    path; a task pinned to each alive node must read it back. URIs (s3://, gs://) pass."""
    if is_uri(storage):
        return
    nodes = _alive_nodes() if nodes is None else nodes
    if len(nodes) < 2:
        return
    check = node_check or _nodes_can_read
    root = Path(storage.removeprefix("file://"))
    root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = root / f".ganmodel-shared-{token[:12]}"
    marker.write_text(token)
    try:
        ok = check(nodes, str(marker), token, timeout)
        missing = [n for n, good in zip(nodes, ok, strict=True) if not good]
    finally:
        marker.unlink(missing_ok=True)
    if missing:
        where = ", ".join(f"{n['NodeID'][:12]} ({n.get('NodeManagerAddress', '?')})" for n in missing)
        raise GanModelError(
            f"train.storage_path: {str(root)!r} is not shared storage: {len(missing)} of {len(nodes)} "
            f"Ray nodes cannot read a file the driver wrote there ({where}); use a directory mounted "
            f"on every node (NFS, EFS, a shared volume) or a URI such as s3://bucket/path"
        )


def run_trainer(spec: JobSpec, cfg: TrainParams, storage_path: str, run_name: str,
                callbacks: list[Any] | None = None):
    """Fit a `TorchTrainer`; returns Ray's `Result` (its `checkpoint` is the last one). `callbacks`
    are Ray Train user callbacks (a sweep trial passes Tune's `TuneReportCallback`)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    cpus = cpus_per_worker(cfg, resolve_address(cfg))
    trainer = TorchTrainer(
        _worker_loop,
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
