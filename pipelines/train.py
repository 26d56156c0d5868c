"""DVC stage `train`: Ray Train TorchTrainer (N workers, DDP) -> generator, loss curve, samples,
and the generator logged as an MLflow model of the train run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganmodel.artifacts import CLASSIFIER, GENERATOR, file_weights_hash
from ganmodel.config import load_params
from ganmodel.data.prepared import read_meta
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.io import OutputSet, write_json
from ganmodel.tracking.runs import (
    CLASSIFIER_HASH_TAG,
    DATA_HASH_TAG,
    RESUMED_TAG,
    find_unfinished_run,
    flatten,
    read_upstream,
    run_ids,
    run_link,
    stage_run,
)
from ganmodel.training.cluster import apply_ray_env_defaults
from ganmodel.training.identity import train_run_name
from ganmodel.training.job import RAY_RUN_TAG, RAY_STORAGE_TAG, check_labels_fit, ray_run_tags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", required=True, help="prepared splits directory")
    ap.add_argument("--classifier", required=True, help="classifier weights (in-training FID)")
    ap.add_argument("--upstream", nargs="+", required=True, metavar="STAGE=RUN_FILE")
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
    check_labels_fit(cfg, meta, args.prepared)  # before Ray starts, and before an MLflow run opens
    upstream = read_upstream(args.upstream, required=("prepare", "classifier"))
    clf_hash = file_weights_hash(args.classifier, CLASSIFIER)

    # The Ray run is named by exactly what DVC tracks for this stage: a re-run of a killed or failed
    # stage with the same inputs resumes its last checkpoint, and continues its MLflow run too.
    name = train_run_name(params.model_dump(mode="json"), meta["data_hash"], clf_hash)
    ray_tags = ray_run_tags(cfg, name)
    tags = {DATA_HASH_TAG: meta["data_hash"], CLASSIFIER_HASH_TAG: clf_hash, **ray_tags}
    previous = find_unfinished_run(params.tracking.experiment, "train", ray_tags)
    if previous is not None:
        tags.update({RESUMED_TAG: "true", f"{RESUMED_TAG}.from_status": previous.info.status})
        print(f"train: continuing MLflow run {previous.info.run_id} ({previous.info.status}) "
              f"of Ray run {name}")
    with stage_run("train", params.tracking.experiment, {"train": cfg.model_dump()},
                   upstream=run_ids(upstream), tags=tags, system_metrics=True,
                   run_id=previous.info.run_id if previous is not None else None) as run:
        from ganmodel.figures import curves_png
        from ganmodel.tracking.models import log_generator_model
        from ganmodel.tracking.runs import backfill_history
        from ganmodel.training.job import run_ray
        from ganmodel.training.outputs import scaling_params, write_train_outputs

        run.log_dataset(meta, args.prepared, context="training")
        run.log_params({**scaling_params(cfg, meta["splits"]["train"]), **ray_tags})
        outcome = run_ray(cfg, str(Path(args.prepared) / "train"), name, run_id=run.run_id,
                          tracking_uri=run.tracking_uri, n_classes=len(meta["classes"]),
                          classifier=args.classifier if cfg.eval_every else None)
        if backfilled := backfill_history(run.run_id, outcome.history, run.tracking_uri):
            print(f"train: epochs {backfilled[0]}-{backfilled[-1]} came from existing checkpoints of Ray run "
                  f"{name} (same params, data, classifier and code); their metrics were copied into this "
                  f"run. Delete {ray_tags[RAY_STORAGE_TAG]}/{ray_tags[RAY_RUN_TAG]} to retrain.")
        with OutputSet() as out:
            summary = write_train_outputs(
                outcome, cfg, meta,
                generator=out.path(args.generator), losses=out.path(args.losses),
                samples=out.path(args.samples))
            curves_png(out.path(args.losses), out.path(args.curves), f"train: {cfg.arch} + {cfg.loss}")
            model = log_generator_model(out.path(args.generator), params=flatten({"train": cfg.model_dump()}))
            summary["stage_wall_time_s"] = round(stage_wall_time_s(), 1)
            write_json(out.path(args.metrics), summary)
            write_json(out.path(args.run_file), run_link(
                run, data_hash=meta["data_hash"], model_id=model.model_id,
                weights_hash=file_weights_hash(out.path(args.generator), GENERATOR)))
            run.log_metrics({k: summary[k]
                             for k in ("steady_images_per_sec", "wall_time_s", "stage_wall_time_s")})
            run.log_artifact(out.path(args.generator), "generator")
            run.log_artifact(out.path(args.samples), "samples")
            run.log_artifact(out.path(args.curves), "plots")
            run.log_artifact(out.path(args.losses), "plots")
        print(f"train: {cfg.epochs} epochs, {summary['steady_images_per_sec']:.0f} img/s steady, "
              f"wall {summary['wall_time_s']:.1f}s, run {run.info.run_id}, model {model.model_id}")


if __name__ == "__main__":
    run_main(main)
