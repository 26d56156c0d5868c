"""The Ray cluster a run goes to: attaching to it or starting a local instance (`init_ray`), the
runtime environment its workers get, and the checks that refuse, before anything is fitted, what
can never work instead of waiting forever: more workers than the alive nodes can place
(`check_resources`), and on a multi-node cluster a local `storage_path` that some node cannot read
(`check_shared_storage`)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
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
# Set on clusters whose autoscaler adds nodes on demand: the resource check then only warns, since
# the nodes that will host the workers may not exist yet.
AUTOSCALING_ENV = "GANMODEL_AUTOSCALING"


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


# Logical CPUs that Ray Data's read tasks need beside the training workers when the train split
# streams: the workers reserve every CPU of a local instance, and Ray Data waits forever for one.
DATA_CPUS = 1


def init_ray(cfg: TrainParams, data_cpus: int = 0) -> None:
    """Attach to `train.ray_address` / `RAY_ADDRESS`, or start a local instance (with `data_cpus`
    logical CPUs more than the machine's cores, for Ray Data's reads: they mostly wait on disk)."""
    apply_ray_env_defaults()
    import ray

    if ray.is_initialized():
        return
    address = resolve_address(cfg)
    kwargs: dict[str, Any] = {"runtime_env": runtime_env_for(address, os.environ)}
    if address is None:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, 1) + data_cpus
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
                    keys: tuple[str, str] = ("train.num_workers", "train.use_gpu"),
                    data_cpus: int = 0) -> None:
    """Refuse a request the cluster can never satisfy, instead of waiting forever. The error names
    `keys` (the params that ask for the workers, and for their GPUs).

    With `GANMODEL_AUTOSCALING=1` (an autoscaling cluster that adds nodes on demand) a shortfall
    only prints a warning, and Ray Train waits for the autoscaler.
    """
    nodes = _alive_nodes() if nodes is None else nodes
    per = cpus_per_worker(cfg, resolve_address(cfg))
    have = placeable_workers(nodes, cfg.use_gpu, per)
    cpus = sum(int(n.get("Resources", {}).get("CPU", 0)) for n in nodes)
    if have >= cfg.num_workers and cpus - cfg.num_workers * per >= data_cpus:
        return
    if have >= cfg.num_workers:
        msg = (f"train.data_loading: streaming needs {data_cpus} CPU for Ray Data's reads besides the "
               f"{cfg.num_workers} workers' {per} each, but the Ray cluster has {cpus} CPUs; use fewer "
               f"{keys[0]} or train.cpus_per_worker, or train.data_loading: memory")
        raise GanModelError(msg)
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


def head_digest(path: str) -> str | None:
    """sha256 of a file's first 64 KiB (None where it cannot be read): what a node must see alike."""
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read(1 << 16)).hexdigest()
    except OSError:
        return None


def _nodes_can_read(nodes: list[dict[str, Any]], marker: str, token: str, timeout: float) -> list[bool]:
    """For each node, run a task pinned to it (hard node affinity) that reads the file `marker`;
    `token` is its `head_digest` on the driver."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def read_marker(path: str) -> str | None:
        return head_digest(path)

    refs = [read_marker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(marker) for n in nodes]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    for ref in pending:
        ray.cancel(ref, force=True)
    done = set(ready)
    return [ref in done and ray.get(ref) == token for ref in refs]


# (nodes, marker path, token, timeout) -> for each node, whether it read the token back.
NodeCheck = Callable[[list[dict[str, Any]], str, str, float], list[bool]]


def _unreadable_on(path: str, nodes: list[dict[str, Any]] | None, node_check: NodeCheck | None,
                   timeout: float) -> tuple[list[dict[str, Any]], int, str]:
    """(the alive nodes that do not read `path` as the driver does, how many nodes there are, their
    names); no probe where there is a single node, which shares its own disk."""
    nodes = _alive_nodes() if nodes is None else nodes
    if len(nodes) < 2:
        return [], len(nodes), ""
    ok = (node_check or _nodes_can_read)(nodes, path, head_digest(path) or "", timeout)
    missing = [n for n, good in zip(nodes, ok, strict=True) if not good]
    return missing, len(nodes), ", ".join(f"{n['NodeID'][:12]} ({n.get('NodeManagerAddress', '?')})"
                                          for n in missing)


def check_shared_storage(storage: str, nodes: list[dict[str, Any]] | None = None,
                         node_check: NodeCheck | None = None, timeout: float = 60.0) -> None:
    """On a multi-node cluster, refuse a local `storage_path` that is not the same directory on
    every node: workers write checkpoints there and the driver reads them back, so a path local to
    each node silently loses checkpoints (and resumes). The driver writes a marker file under the
    path; a task pinned to each alive node must read it back. URIs (s3://, gs://) pass."""
    if is_uri(storage) or len(nodes := _alive_nodes() if nodes is None else nodes) < 2:
        return
    root = Path(storage.removeprefix("file://"))
    root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = root / f".ganmodel-shared-{token[:12]}"
    marker.write_text(token)
    try:
        missing, total, where = _unreadable_on(str(marker), nodes, node_check, timeout)
    finally:
        marker.unlink(missing_ok=True)
    if missing:
        raise GanModelError(
            f"train.storage_path: {str(root)!r} is not shared storage: {len(missing)} of {total} "
            f"Ray nodes cannot read a file the driver wrote there ({where}); use a directory mounted "
            f"on every node (NFS, EFS, a shared volume) or a URI such as s3://bucket/path"
        )


def check_shared_input(path: str, key: str, nodes: list[dict[str, Any]] | None = None,
                       node_check: NodeCheck | None = None, timeout: float = 60.0) -> None:
    """On a multi-node cluster, refuse an input file that some node does not see with the same
    content at the same path: streamed data is read in place by tasks on any node (`key` is the
    param that chose streaming)."""
    if is_uri(path):
        return
    missing, total, where = _unreadable_on(path, nodes, node_check, timeout)
    if missing:
        raise GanModelError(
            f"{key}: stream reads {path} in place on every node, but {len(missing)} of {total} Ray "
            f"nodes cannot read it ({where}); put data/prepared on storage every node mounts, or use "
            f"{key}: memory (the split is then shipped through the object store)")
