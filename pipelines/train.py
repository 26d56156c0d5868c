"""DVC stage `train`: Ray Train TorchTrainer (N workers, DDP) -> generator, loss curve, samples."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganmodel.config import load_params
from ganmodel.data.prepared import read_meta
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.io import OutputSet, write_json
from ganmodel.runs import DATA_HASH_TAG, RESUMED_TAG, find_unfinished_run, read_run_file, run_link, stage_run
from ganmodel.training.job import RAY_RUN_TAG, RAY_STORAGE_TAG, ray_run_tags
from ganmodel.training.ray_runner import apply_ray_env_defaults


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", required=True, help="prepared splits directory")
    ap.add_argument("--prepare-run", required=True, help="run link of the prepare stage")
    ap.add_argument("--classifier", required=True, help="classifier weights (in-training FID)")
    ap.add_argument("--classifier-run", required=True, help="run link of the classifier stage")
    ap.add_argument("--stats-cache", required=True, help="directory of cached real features")
    ap.add_argument("--generator", required=True, help="output: generator weights")
    ap.add_argument("--losses", required=True, help="output: per-epoch losses (CSV, DVC plot)")
    ap.add_argument("--samples", required=True, help="output: last sample grid (PNG)")
    ap.add_argument("--curves", required=True, help="output: loss/FID curves rendered offline (PNG)")
    ap.add_argument("--metrics", required=True, help="output: headline metrics (JSON)")
    ap.add_argument("--run-file", required=True, help="output: MLflow run link (JSON)")
    args = ap.parse_args()
    apply_ray_env_defaults()  # before anything imports ray
    params = load_params(args.params)
    cfg = params.train
    meta = read_meta(args.prepared)
    upstream = {"prepare": read_run_file(args.prepare_run)["run_id"],
                "classifier": read_run_file(args.classifier_run)["run_id"]}

    # A re-run of a killed or failed stage resumes the Ray run's last checkpoint (same run name and
    # storage); continue its MLflow run too, instead of opening a second one.
    ray_tags = ray_run_tags(cfg, meta["data_hash"])
    tags = {DATA_HASH_TAG: meta["data_hash"], **ray_tags}
    previous = find_unfinished_run(params.tracking.experiment, "train", ray_tags)
    if previous is not None:
        tags.update({RESUMED_TAG: "true", f"{RESUMED_TAG}.from_status": previous.info.status})
        print(f"train: continuing MLflow run {previous.info.run_id} ({previous.info.status}) of Ray run "
              f"{ray_tags[RAY_RUN_TAG]}")
    with stage_run("train", params.tracking.experiment, {"train": cfg.model_dump()},
                   upstream=upstream, tags=tags, system_metrics=True,
                   run_id=previous.info.run_id if previous is not None else None) as run:
        import mlflow

        from ganmodel.plots import curves_png
        from ganmodel.training.job import backfill_history, run_ray
        from ganmodel.training.outputs import real_stats_for_training, scaling_params, write_train_outputs

        mlflow.log_params(scaling_params(cfg, meta["splits"]["train"]))
        stats = (real_stats_for_training(args.classifier, args.prepared, meta["data_hash"], args.stats_cache)
                 if cfg.eval_every else None)
        outcome = run_ray(cfg, str(Path(args.prepared) / "train.pt"), run.info.run_id,
                          mlflow.get_tracking_uri(), meta["data_hash"], eval_stats=stats,
                          classifier=str(Path(args.classifier).absolute()) if stats else None,
                          log_params=mlflow.log_params)
        if backfilled := backfill_history(mlflow.tracking.MlflowClient(), run.info.run_id, outcome.history):
            print(f"train: epochs {backfilled[0]}-{backfilled[-1]} came from existing checkpoints of Ray run "
                  f"{ray_tags[RAY_RUN_TAG]} (same params, data and code); their metrics were copied into "
                  f"this run. Delete {ray_tags[RAY_STORAGE_TAG]}/{ray_tags[RAY_RUN_TAG]} to retrain.")
        with OutputSet() as out:
            summary = write_train_outputs(
                outcome, cfg, meta,
                generator=out.path(args.generator), losses=out.path(args.losses),
                samples=out.path(args.samples))
            curves_png(out.path(args.losses), out.path(args.curves), f"train: {cfg.arch} + {cfg.loss}")
            summary["stage_wall_time_s"] = round(stage_wall_time_s(), 1)
            write_json(out.path(args.metrics), summary)
            write_json(out.path(args.run_file), run_link(run, data_hash=meta["data_hash"]))
            mlflow.log_metrics({k: summary[k] for k in ("steady_images_per_sec", "wall_time_s",
                                                        "stage_wall_time_s")})
            mlflow.log_artifact(str(out.path(args.generator)), "generator")
            mlflow.log_artifact(str(out.path(args.samples)), "samples")
            mlflow.log_artifact(str(out.path(args.curves)), "plots")
            mlflow.log_artifact(str(out.path(args.losses)), "plots")
        print(f"train: {cfg.epochs} epochs, {summary['steady_images_per_sec']:.0f} img/s steady, "
              f"wall {summary['wall_time_s']:.1f}s, run {run.info.run_id}")


if __name__ == "__main__":
    run_main(main)
