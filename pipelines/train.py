"""DVC stage `train`: Ray Train TorchTrainer (N workers, DDP) -> generator, loss curve, samples."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganmodel.config import load_params
from ganmodel.data.prepared import read_meta
from ganmodel.entry import run_main
from ganmodel.io import OutputSet, write_json
from ganmodel.runs import DATA_HASH_TAG, read_run_file, run_link, stage_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", required=True, help="prepared splits directory")
    ap.add_argument("--prepare-run", required=True, help="run link of the prepare stage")
    ap.add_argument("--generator", required=True, help="output: generator weights")
    ap.add_argument("--losses", required=True, help="output: per-epoch losses (CSV, DVC plot)")
    ap.add_argument("--samples", required=True, help="output: last sample grid (PNG)")
    ap.add_argument("--metrics", required=True, help="output: headline metrics (JSON)")
    ap.add_argument("--run-file", required=True, help="output: MLflow run link (JSON)")
    args = ap.parse_args()
    params = load_params(args.params)
    cfg = params.train
    meta = read_meta(args.prepared)
    upstream = read_run_file(args.prepare_run)

    with stage_run("train", params.tracking.experiment, {"train": cfg.model_dump()},
                   upstream={"prepare": upstream["run_id"]},
                   tags={DATA_HASH_TAG: meta["data_hash"]}) as run:
        import mlflow

        from ganmodel.training.job import run_ray
        from ganmodel.training.outputs import scaling_params, write_train_outputs

        mlflow.log_params(scaling_params(cfg, meta["splits"]["train"]))
        outcome = run_ray(cfg, str(Path(args.prepared) / "train.pt"), run.info.run_id,
                          mlflow.get_tracking_uri(), meta["data_hash"], log_params=mlflow.log_params)
        with OutputSet() as out:
            summary = write_train_outputs(
                outcome, cfg, meta,
                generator=out.path(args.generator), losses=out.path(args.losses),
                samples=out.path(args.samples))
            write_json(out.path(args.metrics), summary)
            write_json(out.path(args.run_file), run_link(run, data_hash=meta["data_hash"]))
            mlflow.log_metrics({"steady_images_per_sec": summary["steady_images_per_sec"],
                                "wall_time_s": summary["wall_time_s"]})
            mlflow.log_artifact(str(out.path(args.generator)), "generator")
            mlflow.log_artifact(str(out.path(args.samples)), "samples")
        print(f"train: {cfg.epochs} epochs, {summary['steady_images_per_sec']:.0f} img/s steady, "
              f"wall {summary['wall_time_s']:.1f}s, run {run.info.run_id}")


if __name__ == "__main__":
    run_main(main)
