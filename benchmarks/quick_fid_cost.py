"""Cost of the in-training quick FID (`train.eval_every`) in a finished train stage.

    .venv/bin/python benchmarks/quick_fid_cost.py [--repo .]

Reads the train stage's MLflow run (its id from `runs/train.json`) and prints the number of quick
FIDs, their total time (`eval_time_s`, measured by the loop around each evaluation) and that
time as a share of the epochs' time (`epoch_time_s`). Uses `MLFLOW_TRACKING_URI` when set, else the
repo's sqlite store.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=".", help="repository whose last train stage to read")
    args = ap.parse_args()
    from mlflow.tracking import MlflowClient

    repo = Path(args.repo).absolute()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}"
    run_id = json.loads((repo / "runs" / "train.json").read_text())["run_id"]
    client = MlflowClient(uri)
    evals = [m.value for m in client.get_metric_history(run_id, "eval_time_s")]
    epochs = [m.value for m in client.get_metric_history(run_id, "epoch_time_s")]
    if not epochs:
        raise SystemExit(f"error: run {run_id} has no epoch_time_s history")
    print(f"train run {run_id}: {len(evals)} quick FIDs, {sum(evals):.2f} s; {len(epochs)} epochs, "
          f"{sum(epochs):.1f} s; quick FID = {100 * sum(evals) / sum(epochs):.2f}% of epoch time")


if __name__ == "__main__":
    main()
