"""The sweep's fixed cost per trial, against a bare `train_local` run of the same epochs, in one run.

    .venv/bin/python benchmarks/sweep_overhead.py [--repo .] [--trials 4] [--epochs 2]
        [--steps-per-epoch 20] [--concurrent 1]

In a repo whose prepare and classifier stages have run (data/prepared, models/classifier.pt), it
runs `ganmodel sweep` on a temporary copy of params.yaml: `--trials` trials of `--epochs` epochs
(the space varies only `train.seed`, so every trial does the same work), no scheduler, `--concurrent`
trials at a time (1: per-trial cost without contention), MLflow and Tune state in a temporary
directory. Then one `python -m ganmodel.train_local` run of the same train params and epochs, no
Ray, MLflow or DVC. It prints both wall times, the sweep's time per trial, the ratio, and how much
of a trial the per-epoch quick FID took (the trials' `eval_time_s`: work train_local does not do).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=".")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps-per-epoch", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=1)
    args = ap.parse_args()
    repo = Path(args.repo).absolute()
    tmp = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
    name = f"overhead-{os.getpid()}"
    try:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["train"].update(steps_per_epoch=args.steps_per_epoch, storage_path=str(tmp / "storage"))
        params["sweep"] = {"name": name, "space": {"seed": {"randint": [0, 1000]}},
                           "num_samples": args.trials, "scheduler": "none", "epochs": args.epochs,
                           "max_concurrent_trials": args.concurrent, "workers_per_trial": 1,
                           "cpus_per_trial": 1}
        path = tmp / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        sweep = _run([sys.executable, "-m", "ganmodel", "sweep", "--params", str(path)], repo, env)
        bare = _run([sys.executable, "-m", "ganmodel.train_local", "--params", str(path),
                     "--prepared", str(repo / "data" / "prepared"), "--epochs", str(args.epochs),
                     "--threads", "1"], repo, env)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        exp = client.get_experiment_by_name(params.get("tracking", {}).get("experiment", "ganmodel"))
        kids = client.search_runs([exp.experiment_id], filter_string="tags.`pipeline.stage` = 'sweep.trial'")
        fid_s = sum(m.value for r in kids for m in client.get_metric_history(r.info.run_id, "eval_time_s"))
        per_trial = sweep * args.concurrent / args.trials
        print(f"sweep: {args.trials} trials x {args.epochs} epochs x {args.steps_per_epoch} steps, "
              f"{args.concurrent} at a time: {sweep:.1f} s wall, {per_trial:.1f} s per trial slot")
        print(f"train_local: the same {args.epochs} epochs in one process: {bare:.1f} s wall")
        print(f"ratio (sweep per trial / train_local): {per_trial / bare:.2f}; fixed cost per trial "
              f"{per_trial - bare:.1f} s (the driver's start spread over the trials included), "
              f"of which quick FIDs {fid_s / args.trials:.2f} s")
    finally:
        shutil.rmtree(repo / "sweeps" / name, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
