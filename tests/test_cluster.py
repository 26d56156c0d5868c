"""Running on an existing Ray cluster.

Fast (no Ray): the example cluster configs in docs/cluster parse and hold what the code and docs
rely on; the resource check, the shared-storage check (with an injected node check) and the
runtime env the driver hands to the cluster.

Integration: a real two-node cluster on this machine (`ray start --head --num-cpus 1`, then
`ray start --address ... --num-cpus 1`, token auth with a private token passed through
RAY_AUTH_TOKEN, so ~/.ray is neither read nor written). The worker node is started in its own
user+mount namespace (`unshare`) with a tmpfs over one directory, so that directory is honestly
*not* shared between the nodes while everything else is. Then:
- `dvc repro train` with 2 workers against it: one worker lands on each node (MLflow placement tags
  name both nodes, which are the cluster's two nodes);
- impossible requests (3 workers on 2 CPUs, GPUs on a GPU-less cluster) fail at once with a clear
  error instead of waiting forever;
- the storage check accepts the shared directory and refuses the node-local one;
- `ganmodel sweep` attached to it runs its two concurrent one-CPU trials one on each node, and
  refuses trials bigger than the cluster in one line before any starts.
Both nodes are stopped by killing their own process groups, not with `ray stop`: that stops every
Ray process on the machine, including other tests' local instances. Cluster tests therefore never
interfere with Ray instances that run concurrently, but they need ports and ~2 GB of memory.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from stage_repo import (
    BIN,
    clone_stage_repo,
    describe,
    edit_params,
    kill_group,
    sh,
    short_tmp,
    train_runs,
)

from ganmodel.config import TrainParams
from ganmodel.errors import GanModelError
from ganmodel.training import cluster as ray_cluster
from ganmodel.training.cluster import (
    check_resources,
    check_shared_storage,
    placeable_workers,
    runtime_env_for,
)
from ganmodel.training.ray_runner import placement_tags

pytest_plugins = ["fixtures_mlflow", "fixtures_stage"]  # mlflow_template_db, upstream_repo

DOCS = Path(__file__).resolve().parents[1] / "docs"


# --- the example cluster configs ------------------------------------------------------------------


def test_cluster_launcher_config() -> None:
    cfg = yaml.safe_load((DOCS / "cluster" / "cluster.yaml").read_text())
    assert cfg["cluster_name"] == "ganmodel"
    assert cfg["provider"]["type"] == "aws" and cfg["provider"]["region"]
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] == 0  # no workers on the head
    gpu_types = {name: t for name, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1}
    assert gpu_types, "no GPU worker node type"
    for t in gpu_types.values():
        assert t["resources"]["CPU"] >= 1  # each Ray Train worker takes 1 CPU and 1 GPU
        assert t["node_config"]["InstanceType"]
        # check_resources refuses workers that do not exist (unless GANMODEL_AUTOSCALING=1): the
        # default train.num_workers must be up from the start.
        assert t["min_workers"] >= TrainParams().num_workers
        assert t["max_workers"] <= cfg["max_workers"]
    head_cmds = " ".join(cfg["head_start_ray_commands"])
    assert "ray start --head" in head_cmds and "--port=6379" in head_cmds and "--num-cpus=0" in head_cmds
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_cmds
    assert "ray start --address=$RAY_HEAD_IP:6379" in " ".join(cfg["worker_start_ray_commands"])
    assert any("pip install" in c and "-e ." in c for c in cfg["setup_commands"])


def test_kuberay_rayjob_manifest() -> None:
    import ray

    job = yaml.safe_load((DOCS / "cluster" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    entry = spec["entrypoint"]
    assert "dvc exp run train" in entry or "dvc repro" in entry or "pipelines/train.py" in entry
    # KubeRay/Ray set RAY_ADDRESS for the entrypoint: nothing may pin another address.
    assert "ray_address" not in entry and "RAY_ADDRESS" not in entry
    assert "train.use_gpu=true" in entry
    storage = entry.split("train.storage_path=", 1)[1].split()[0].rstrip(";'")
    assert ray_cluster.is_uri(storage)  # shared by construction (check_shared_storage passes URIs)
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__  # keep the example in step with the pinned Ray
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"

    def env_of(container: dict[str, Any]) -> dict[str, Any]:
        return {e["name"]: e for e in container.get("env", [])}

    (head_c,) = head["template"]["spec"]["containers"]
    assert env_of(head_c)["MLFLOW_TRACKING_URI"]["value"].startswith("http")
    groups = cluster["workerGroupSpecs"]
    assert groups
    gpus = 0
    for group in groups:
        for c in group["template"]["spec"]["containers"]:
            limits = c["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1
            assert c["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
            env = env_of(c)
            assert env["MLFLOW_TRACKING_URI"] == env_of(head_c)["MLFLOW_TRACKING_URI"]
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
            gpus += int(limits["nvidia.com/gpu"]) * group["replicas"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert gpus >= 2  # the entrypoint asks for train.num_workers=2 GPU workers
    assert "train.num_workers=2" in entry


def test_scaling_doc_covers_the_team_setup() -> None:
    text = (DOCS / "scaling.md").read_text()
    for needle in ("RAY_ADDRESS", "train.ray_address", "storage_path", "s3://", "MLFLOW_TRACKING_URI",
                   "dvc remote add -d", "cluster/cluster.yaml", "cluster/rayjob.yaml", "GANMODEL_AUTOSCALING",
                   "max_failures", "resumed"):
        assert needle in text, needle


# --- the checks, without a cluster -------------------------------------------------------------------


def _node(cpu: float, gpu: float = 0, node_id: str = "n", ip: str = "10.0.0.1") -> dict[str, Any]:
    res = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    return {"NodeID": node_id, "NodeManagerAddress": ip, "Alive": True, "Resources": res}


def _cfg(**kw: Any) -> TrainParams:
    base = dict(preset="custom", num_workers=2, batch_size=64)
    base.update(kw)
    return TrainParams(**base)


def test_placeable_workers_counts_per_node() -> None:
    assert placeable_workers([_node(1), _node(1)], use_gpu=False) == 2
    assert placeable_workers([_node(8, 1), _node(8, 1)], use_gpu=True) == 2
    # CPUs on one node and GPUs on another cannot make a worker.
    assert placeable_workers([_node(0, 4), _node(4)], use_gpu=True) == 0
    assert placeable_workers([_node(2.5, 1.0)], use_gpu=False) == 2


def test_check_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ray_cluster.AUTOSCALING_ENV, raising=False)
    check_resources(_cfg(), nodes=[_node(1), _node(1)])
    with pytest.raises(GanModelError, match=r"train.num_workers: 3 workers need 1 CPU each, but the Ray "
                                            r"cluster's 2 node\(s\) \(2 CPUs, 0 GPUs\) can host only 2"):
        check_resources(_cfg(num_workers=3, batch_size=96), nodes=[_node(1), _node(1)])
    with pytest.raises(GanModelError, match=r"train.use_gpu: 2 workers need 1 CPU and 1 GPU each.*0 GPUs"):
        check_resources(_cfg(use_gpu=True), nodes=[_node(1), _node(1)])
    check_resources(_cfg(use_gpu=True), nodes=[_node(0), _node(8, 1), _node(8, 1)])
    # An autoscaling cluster may add the nodes later: warn, let Ray Train wait.
    monkeypatch.setenv(ray_cluster.AUTOSCALING_ENV, "1")
    check_resources(_cfg(use_gpu=True), nodes=[_node(0)])


def test_check_shared_storage_with_an_injected_node_check(tmp_path: Path) -> None:
    nodes = [_node(1, node_id="a" * 56, ip="10.0.0.1"), _node(1, node_id="b" * 56, ip="10.0.0.2")]
    seen: list[tuple[str, str]] = []

    def reads_on(readers: set[str]):
        def check(ns, marker, token, timeout):
            seen.append((marker, token))
            # The driver wrote it under the storage path; the token is what each node must read back.
            assert ray_cluster.head_digest(marker) == token and len(Path(marker).read_text()) == 32
            assert Path(marker).parent == tmp_path / "ckpt"
            return [n["NodeID"] in readers for n in ns]
        return check

    check_shared_storage(str(tmp_path / "ckpt"), nodes, reads_on({"a" * 56, "b" * 56}))
    with pytest.raises(GanModelError, match=r"train.storage_path: .* is not shared storage: 1 of 2 Ray "
                                            r"nodes cannot read .*bbbbbbbbbbbb \(10.0.0.2\)"):
        check_shared_storage(str(tmp_path / "ckpt"), nodes, reads_on({"a" * 56}))
    assert len(seen) == 2 and seen[0][1] != seen[1][1]  # a fresh token each time
    assert not list((tmp_path / "ckpt").iterdir())  # markers removed

    def never(*_args):
        raise AssertionError("must not probe the nodes")

    check_shared_storage("s3://bucket/ckpt", nodes, never)  # URIs are shared by construction
    check_shared_storage(str(tmp_path / "one"), nodes[:1], never)  # a single node shares its disk


def test_check_shared_input_with_an_injected_node_check(tmp_path: Path) -> None:
    from ganmodel.training.cluster import check_shared_input, head_digest

    shard = tmp_path / "part-00000.parquet"
    shard.write_bytes(b"PAR1" + bytes(100))
    nodes = [{"NodeID": "a" * 20, "NodeManagerAddress": "10.0.0.1"},
             {"NodeID": "b" * 20, "NodeManagerAddress": "10.0.0.2"}]
    seen = []

    def same(ns, path, token, timeout):
        seen.append((path, token))
        return [True, True]

    check_shared_input(str(shard), "train.data_loading", nodes, same)
    assert seen == [(str(shard), head_digest(str(shard)))]
    with pytest.raises(GanModelError) as err:
        check_shared_input(str(shard), "train.data_loading", nodes, lambda *a: [True, False])
    msg = str(err.value)
    assert msg.startswith("train.data_loading: stream reads") and "1 of 2 Ray nodes" in msg
    assert "bbbbbbbbbbbb" in msg
    assert "\n" not in msg
    # One node: nothing to share.
    check_shared_input(str(shard), "train.data_loading", nodes[:1], lambda *a: [False])


def test_placement_tags() -> None:
    tags = placement_tags([
        {"rank": 0, "node_id": "n1", "node_ip": "10.0.0.1", "host": "h1", "device": "cpu"},
        {"rank": 1, "node_id": "n2", "node_ip": "10.0.0.2", "host": "h2", "device": "cpu"},
    ])
    assert tags == {"placement.nodes": "2", "placement.rank0": "n1 10.0.0.1 h1 cpu",
                    "placement.rank1": "n2 10.0.0.2 h2 cpu"}


def test_runtime_env_ships_code_and_settings_to_an_existing_cluster() -> None:
    import ganmodel

    environ = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "GANMODEL_X": "1", "RAY_TRAIN_Y": "2",
               "RAY_AUTH_TOKEN": "secret", "HOME": "/root"}
    local = runtime_env_for(None, environ)
    assert local == {"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "GANMODEL_X": "1",
                                  "RAY_TRAIN_Y": "2"}}  # never the auth token
    remote = runtime_env_for("10.0.0.1:6379", environ)
    assert remote["py_modules"] == [ganmodel] and remote["env_vars"] == local["env_vars"]
    # Under a Ray Job the job's runtime env wins (Ray refuses to merge conflicting keys).
    job = {"runtime_env": {"env_vars": {"MLFLOW_TRACKING_URI": "http://other"}, "working_dir": "."}}
    in_job = runtime_env_for("10.0.0.1:6379", {**environ, ray_cluster.JOB_CONFIG_ENV: json.dumps(job)})
    assert "py_modules" not in in_job and "MLFLOW_TRACKING_URI" not in in_job["env_vars"]


# --- a real two-node cluster ----------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


def _start_node(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("cluster")
    root = Path(short_tmp("rc"))  # Ray's socket paths are length-limited
    shared, private = root / "shared", root / "node-local"
    shared.mkdir()
    private.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "MLFLOW_", "DVC_", "GANMODEL_", "PYTHONPATH"))}
    env.update(PATH=str(BIN) + os.pathsep + env.get("PATH", ""), RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    common = ["--num-cpus", "1", "--temp-dir", str(root / "ray"), "--object-store-memory", str(150 * 2**20),
              "--disable-usage-stats"]
    head = ["ray", "start", "--head", "--port", str(port), "--include-dashboard=false",
            "--dashboard-port", str(_free_port()), "--ray-client-server-port", str(_free_port()),
            "--dashboard-agent-listen-port", str(_free_port()), *common]
    worker = ["ray", "start", "--address", f"127.0.0.1:{port}",
              "--dashboard-agent-listen-port", str(_free_port()), *common]
    masked = _can_unshare()
    if masked:
        # This node sees an empty tmpfs at `private`; the head (and the driver) see the real one.
        script = f'mount -t tmpfs none "{private}" && exec "$@"'
        worker = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *worker]
    groups: list[int] = []
    try:
        h = _start_node(head, env, tmp / "head.log")
        groups.append(h.pid)
        assert h.wait(timeout=120) == 0, (tmp / "head.log").read_text()[-4000:]
        w = _start_node(worker, env, tmp / "worker.log")
        groups.append(w.pid)
        assert w.wait(timeout=120) == 0, (tmp / "worker.log").read_text()[-4000:]
        yield SimpleNamespace(address=f"127.0.0.1:{port}", env=env, tmp=tmp, root=root, shared=shared,
                              private=private, masked=masked)
    finally:
        for pgid in reversed(groups):  # the worker node first, then the head
            kill_group(pgid, grace=5)
        shutil.rmtree(root, ignore_errors=True)


PROBE = """
import json, sys, time
import ray
from ganmodel.config import TrainParams
from ganmodel.errors import GanModelError
from ganmodel.training.cluster import _alive_nodes, check_resources, check_shared_storage

address, shared, private = sys.argv[1:4]
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + 60
while len(_alive_nodes()) < 2 and time.monotonic() < deadline:
    time.sleep(0.5)

def _custom(**kw):
    return TrainParams(preset="custom", **kw)

def attempt(fn):
    t0 = time.monotonic()
    try:
        fn()
        return {"error": None, "s": time.monotonic() - t0}
    except GanModelError as err:
        return {"error": str(err), "s": time.monotonic() - t0}

out = {
    "nodes": sorted(n["NodeID"] for n in _alive_nodes()),
    "head": ray.get_runtime_context().get_node_id(),
    "two_workers": attempt(lambda: check_resources(_custom(num_workers=2, batch_size=64))),
    "three_workers": attempt(lambda: check_resources(_custom(num_workers=3, batch_size=96))),
    "gpus": attempt(lambda: check_resources(_custom(num_workers=2, batch_size=64, use_gpu=True))),
    "shared": attempt(lambda: check_shared_storage(shared)),
    "private": attempt(lambda: check_shared_storage(private, timeout=60)),
}
print("PROBE " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe(cluster) -> dict[str, Any]:
    """The checks, run by a driver attached to the cluster (a subprocess: its own Ray client)."""
    env = {**cluster.env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-c", PROBE, cluster.address, str(cluster.shared), str(cluster.private)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=cluster.tmp)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, describe(proc)
    return json.loads(lines[-1].removeprefix("PROBE "))


@pytest.fixture(scope="module")
def cluster_train(cluster, upstream_repo: Path, mlflow_template_db: Path):
    """`dvc repro train` with 2 workers on the cluster (train.ray_address), checkpoints on the
    shared directory."""
    repo, env = clone_stage_repo(upstream_repo, cluster.tmp / "stage", mlflow_template_db, str(cluster.root),
                                 epochs=2, num_workers=2, ray_address=cluster.address,
                                 storage_path=str(cluster.shared / "ckpt"))
    env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": cluster.env["RAY_AUTH_TOKEN"]}
    proc = sh(["dvc", "repro", "train"], repo, env, timeout=600)
    runs = train_runs(env["MLFLOW_TRACKING_URI"])
    return SimpleNamespace(repo=repo, env=env, proc=proc, log=proc.stdout + proc.stderr, runs=runs)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_train_stage_runs_a_worker_on_each_node(cluster, probe, cluster_train) -> None:
    assert len(probe["nodes"]) == 2, probe
    (run,) = cluster_train.runs
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["placement.nodes"] == "2", tags
    nodes = {tags[f"placement.rank{r}"].split()[0] for r in range(2)}
    assert nodes == set(probe["nodes"]), (nodes, probe["nodes"])
    assert "placement: rank 0 on node" in cluster_train.log
    assert "Started a local Ray instance" not in cluster_train.log  # it attached instead
    assert run.data.params["scaling.workers"] == "2"
    summary = json.loads((cluster_train.repo / "metrics" / "train.json").read_text())
    assert summary["epochs"] == 2
    assert any((cluster.shared / "ckpt").rglob("state.pt"))


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_impossible_requests_fail_fast(cluster, probe, cluster_train) -> None:
    assert probe["two_workers"]["error"] is None
    assert "train.num_workers: 3 workers need 1 CPU each" in probe["three_workers"]["error"]
    assert "can host only 2" in probe["three_workers"]["error"]
    assert "train.use_gpu: 2 workers need 1 CPU and 1 GPU each" in probe["gpus"]["error"]
    assert all(probe[k]["s"] < 5 for k in ("three_workers", "gpus"))
    # The whole stage: exits with the one-line error instead of waiting for resources forever.
    edit_params(cluster_train.repo, "train", num_workers=3, batch_size=96)
    proc = sh(["dvc", "repro", "train"], cluster_train.repo, cluster_train.env, timeout=180, check=False)
    assert proc.returncode != 0, describe(proc)
    assert "error: train.num_workers: 3 workers need 1 CPU each, but the Ray cluster's 2 node(s) " \
           "(2 CPUs, 0 GPUs) can host only 2" in proc.stderr, describe(proc)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_storage_must_be_shared_across_nodes(cluster, probe) -> None:
    assert probe["shared"]["error"] is None, probe["shared"]
    if not cluster.masked:
        pytest.skip("unshare (user + mount namespaces) unavailable: no node-local directory to test with; "
                    "the refusal is covered by test_check_shared_storage_with_an_injected_node_check")
    err = probe["private"]["error"]
    assert err and "is not shared storage: 1 of 2 Ray nodes cannot read" in err, probe["private"]
    (worker,) = set(probe["nodes"]) - {probe["head"]}
    assert worker[:12] in err and probe["head"][:12] not in err


# --- a sweep on the same cluster --------------------------------------------------------------------

CLUSTER_SWEEP = {"name": "cluster", "space": {"lr_d": {"choice": [2.0e-3, 1.0e-3]}}, "num_samples": 2,
                 "scheduler": "none", "epochs": 1, "max_concurrent_trials": 2, "workers_per_trial": 1,
                 "cpus_per_trial": 1, "seed": 0}


@pytest.fixture(scope="module")
def cluster_sweep(cluster, upstream_repo: Path, mlflow_template_db: Path):
    """`ganmodel sweep` attached to the cluster (train.ray_address): 2 one-worker trials of 1 CPU at
    once on two 1-CPU nodes, so each node must host one; Tune's state on the shared directory."""
    repo, env = clone_stage_repo(upstream_repo, cluster.tmp / "sweep", mlflow_template_db, str(cluster.root),
                                 steps_per_epoch=3, eval_samples=100, ray_address=cluster.address,
                                 storage_path=str(cluster.shared / "sweep"))
    edit_params(repo, "sweep", **CLUSTER_SWEEP)
    env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": cluster.env["RAY_AUTH_TOKEN"]}
    proc = sh([sys.executable, "-m", "ganmodel", "sweep"], repo, env, timeout=600)
    with open(repo / "sweeps" / "cluster" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return SimpleNamespace(repo=repo, env=env, proc=proc, rows=rows)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_sweep_trials_land_on_both_nodes(cluster, probe, cluster_sweep) -> None:
    rows = cluster_sweep.rows
    assert [r["status"] for r in rows] == ["finished", "finished"], describe(cluster_sweep.proc)
    nodes = {r["nodes"] for r in rows}  # the Ray node of each trial's (only) worker
    assert nodes == set(probe["nodes"]), (nodes, probe["nodes"])
    assert "Started a local Ray instance" not in cluster_sweep.proc.stderr  # it attached


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_sweep_refuses_trials_the_cluster_cannot_host(cluster, cluster_sweep) -> None:
    repo, env = cluster_sweep.repo, cluster_sweep.env
    edit_params(repo, "train", batch_size=96)
    edit_params(repo, "sweep", workers_per_trial=3, name="too-big")
    proc = sh([sys.executable, "-m", "ganmodel", "sweep"], repo, env, timeout=180, check=False)
    assert proc.returncode == 2, describe(proc)
    expected = ("error: sweep.workers_per_trial: 3 workers need 1 CPU each, but the Ray cluster's 2 node(s) "
                "(2 CPUs, 0 GPUs) can host only 2 (set GANMODEL_AUTOSCALING=1 on an autoscaling cluster)")
    assert proc.stderr.strip().splitlines()[-1] == expected, describe(proc)
    assert not (repo / "sweeps" / "too-big").exists()  # refused before any trial or output


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_streaming_workers_on_two_nodes_read_disjoint_shards(cluster, probe) -> None:
    """`train.data_loading: stream` across nodes: the pipeline's Ray Data path (`stream_probe.py`)
    with 2 workers, one per node, reading one prepared split from the shared directory. Each
    epoch the ranks' rows are disjoint and cover the split. Ray Data's reads need a CPU the workers
    do not hold, so a third one-CPU node joins for this test (and leaves after it)."""
    from stream_probe import N, check_disjoint_full_epochs, run_probe, write_id_split

    node = ["ray", "start", "--address", cluster.address, "--dashboard-agent-listen-port", str(_free_port()),
            "--num-cpus", "1", "--temp-dir", str(cluster.root / "ray"),
            "--object-store-memory", str(150 * 2**20), "--disable-usage-stats"]
    extra = _start_node(node, cluster.env, cluster.tmp / "data-node.log")
    try:
        assert extra.wait(timeout=120) == 0, (cluster.tmp / "data-node.log").read_text()[-4000:]
        prepared = write_id_split(cluster.shared / "stream-prepared")
        env = {**cluster.env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        ranks = run_probe(cluster.address, prepared, cluster.shared / "seen.json", 2, 64, env=env,
                          cwd=cluster.tmp)
    finally:
        kill_group(extra.pid, grace=5)
    check_disjoint_full_epochs(ranks, N, 64)
    assert len({r["node"] for r in ranks}) == 2  # one worker on each of two nodes
