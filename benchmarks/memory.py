"""Memory and speed of the train stage's two loaders as the data grows, side by side.

    python benchmarks/memory.py [--sizes-gb 0.5,1,2,4] [--workers 1] [--steps 200] [--epochs 2]
                                [--dir /tmp/ganmodel-memory]

For each size it writes a synthetic prepared set of 64x64 RGB images (uniform noise, 10 classes,
the real shard format, cached in --dir), then trains the default recipe (params.yaml's `train`
preset) on it through the train stage's own Ray path (`job.run_ray`, a local Ray instance) under
`train.data_loading: memory` and `stream`, each in a fresh process. It prints, per set and loader:
- peak RSS of a worker (the largest over workers; `worker_peak_rss_mb`, measured by the loop);
- peak RSS of the driver (the process that calls `run_ray`);
- steady img/s (median over the epochs after the first).
Epochs are capped at --steps steps so that each run takes minutes. A streamed epoch starts a new Ray
Data execution (a few seconds before its first batch); at 200 steps that costs 0.93x of memory's
img/s, at 60 steps 0.64x (1 GB set, 1 worker, this 2-core machine). A real epoch of the 1 GB set is
1,360 steps, so keep --steps large enough to amortise it as training does.
`memory` ships the split's bytes through the object store and every worker holds it whole;
`stream` reads shards with Ray Data, so a worker holds batches, not the set.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

SHAPE = (3, 64, 64)
CLASSES = 10
CHUNK = 20_000  # images generated and written at a time: the writer's memory stays small


def build_set(root: Path, gb: float) -> Path:
    """A prepared dir with a train split of `gb` GB of pixels (cached)."""
    from ganmodel.data.shards import write_split

    out = root / f"synthetic-{gb:g}gb"
    done = out / "meta.json"
    if done.is_file():
        return out
    n = int(gb * 1e9) // (SHAPE[0] * SHAPE[1] * SHAPE[2])
    g = torch.Generator().manual_seed(0)
    shard = 0
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        images = torch.randint(0, 256, (m, *SHAPE), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, CLASSES, (m,), generator=g)
        shard += len(write_split(out, "train", images, labels, first_shard=shard))
    meta = {"dataset": "synthetic", "data_hash": f"synthetic-{gb:g}gb",
            "classes": [str(c) for c in range(CLASSES)],
            "image_shape": list(SHAPE), "splits": {"train": n}}
    done.write_text(json.dumps(meta))
    return out


def one(args: argparse.Namespace) -> None:
    """Train once in this process (the driver) and print a JSON line."""
    from ganmodel.config import parse_params, read_params
    from ganmodel.training.job import run_ray

    raw = read_params(args.params)
    raw["train"] = {**(raw.get("train") or {}), "num_workers": args.workers, "epochs": args.epochs,
                    "steps_per_epoch": args.steps, "eval_every": 0, "data_loading": args.loading,
                    "storage_path": str(Path(args.prepared) / f"ckpt-{args.loading}-{time.time_ns()}")}
    cfg = parse_params(raw, "benchmark").train
    name = f"memory-bench-{time.time_ns()}"
    out = run_ray(cfg, str(Path(args.prepared) / "train"), name, n_classes=CLASSES)
    rates = [h["images_per_sec"] for h in out.history[1:]] or [out.history[0]["images_per_sec"]]
    print("RESULT " + json.dumps({
        "worker_peak_rss_mb": max(h["worker_peak_rss_mb"] for h in out.history),
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "images_per_sec": sorted(rates)[len(rates) // 2]}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-gb", default="0.5,1,2,4")
    ap.add_argument("--loaders", default="memory,stream")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200, help="train.steps_per_epoch")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dir", default="/tmp/ganmodel-memory", help="where the synthetic sets are cached")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prepared", help=argparse.SUPPRESS)
    ap.add_argument("--loading", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args)
        return
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for gb in (float(s) for s in args.sizes_gb.split(",")):
        t0 = time.perf_counter()
        prepared = build_set(root, gb)
        print(f"set {gb:g} GB: {prepared} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for loading in args.loaders.split(","):
            cmd = [sys.executable, __file__, "--one", "--prepared", str(prepared), "--loading", loading,
                   "--workers", str(args.workers), "--steps", str(args.steps), "--epochs", str(args.epochs),
                   "--params", args.params]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
                print(f"  {loading}: failed (exit {proc.returncode}): {' | '.join(tail)}", flush=True)
                rows.append((gb, loading, None))
                continue
            r = json.loads(lines[-1].removeprefix("RESULT "))
            rows.append((gb, loading, r))
            print(f"  {loading}: {r}", flush=True)
    print(f"\n{args.workers} worker(s), batch from params, {args.steps} steps x {args.epochs} epochs, "
          "64x64 RGB")
    print(f"{'set GB':>6s} {'loader':>7s} {'worker peak RSS MiB':>20s} {'driver peak RSS MiB':>20s} "
          f"{'steady img/s':>13s}")
    for gb, loading, r in rows:
        if r is None:
            print(f"{gb:6g} {loading:>7s} {'failed':>20s}")
            continue
        print(f"{gb:6g} {loading:>7s} {r['worker_peak_rss_mb']:20.0f} {r['driver_peak_rss_mb']:20.0f} "
              f"{r['images_per_sec']:13.1f}")


if __name__ == "__main__":
    main()
