"""DVC stage `evaluate`: FID/KID/IS/precision/recall/coverage in the classifier's feature space,
next to the real-vs-real floor at the same N, plus sample grid and nearest-neighbour sheets."""

from __future__ import annotations

import argparse

from ganmodel.config import load_params
from ganmodel.data.prepared import load_split, read_meta
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.errors import GanModelError
from ganmodel.io import OutputSet, write_csv, write_json
from ganmodel.runs import DATA_HASH_TAG, read_upstream, run_link, stage_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", required=True)
    ap.add_argument("--classifier", required=True, help="classifier weights")
    ap.add_argument("--generator", required=True, help="generator weights")
    ap.add_argument("--stats-cache", required=True, help="directory of cached real features")
    ap.add_argument("--upstream", nargs="+", required=True, metavar="STAGE=RUN_FILE")
    ap.add_argument("--metrics", required=True, help="output: metrics JSON")
    ap.add_argument("--samples", required=True, help="output: sample grid PNG")
    ap.add_argument("--neighbours", required=True, help="output: nearest-neighbour sheet PNG")
    ap.add_argument("--classes", required=True, help="output: generated vs real class shares (CSV plot)")
    ap.add_argument("--classes-png", required=True, help="output: the same as an offline bar chart PNG")
    ap.add_argument("--run-file", required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    cfg = params.evaluate
    meta = read_meta(args.prepared)
    upstream = read_upstream(args.upstream)

    from ganmodel.evaluation import evaluate, heldout
    from ganmodel.networks.classifier import load_classifier
    from ganmodel.training.checkpoint import load_generator

    classifier, clf_meta = load_classifier(args.classifier)
    if len(meta["classes"]) != classifier.n_classes:
        raise GanModelError(f"{args.classifier}: {classifier.n_classes} classes, but {args.prepared} has "
                            f"{len(meta['classes'])}; re-run the classifier stage")
    generator = load_generator(args.generator)
    train = load_split(args.prepared, "train")
    held = heldout(load_split(args.prepared, "val"), load_split(args.prepared, "test"))

    with stage_run("evaluate", params.tracking.experiment, {"evaluate": cfg.model_dump()},
                   upstream=upstream, tags={DATA_HASH_TAG: meta["data_hash"],
                                            "classifier.hash": clf_meta["hash"]}) as run:
        import mlflow

        from ganmodel.images import save_grid
        from ganmodel.metrics.coverage import DEFAULT_MIN_RELATIVE_SHARE
        from ganmodel.plots import class_histogram_png

        res = evaluate(generator, classifier, train, held, cfg, meta["data_hash"], args.stats_cache,
                       class_names=meta["classes"])
        summary = {**{k: round(v, 6) if isinstance(v, float) else v for k, v in res.headline.items()},
                   "data_hash": meta["data_hash"], "classifier_hash": clf_meta["hash"]}
        with OutputSet() as out:
            save_grid(res.grid, out.path(args.samples))
            save_grid(res.nn_sheet, out.path(args.neighbours), nrow=res.nn_cols)
            write_csv(out.path(args.classes), res.histogram)
            class_histogram_png(res.histogram, out.path(args.classes_png),
                                f"{meta['dataset']}: classes of {cfg.n_samples} generated images",
                                DEFAULT_MIN_RELATIVE_SHARE)
            summary["stage_wall_time_s"] = round(stage_wall_time_s(), 1)
            mlflow.log_metrics({**res.metrics, "stage_wall_time_s": summary["stage_wall_time_s"]})
            write_json(out.path(args.metrics), summary)
            write_json(out.path(args.run_file), run_link(run))
            mlflow.log_dict(summary, "evaluate.json")
            mlflow.log_artifact(str(out.path(args.samples)), "samples")
            mlflow.log_artifact(str(out.path(args.neighbours)), "samples")
            mlflow.log_artifact(str(out.path(args.classes)), "plots")
            mlflow.log_artifact(str(out.path(args.classes_png)), "plots")
        m = res.metrics
        print(f"evaluate (N={cfg.n_samples}): FID {m['fid']:.2f} (floor {m['fid_floor']:.2f}, ratio "
              f"{m['fid_ratio']:.2f}), KID {m['kid_mean']:.4f}, IS {m['is_mean']:.2f}, precision "
              f"{m['precision']:.3f}, recall {m['recall']:.3f}, classes {m['classes_covered']:.0f}, "
              f"{m['eval_time_s']:.1f}s of metrics, {summary['stage_wall_time_s']:.1f}s in all")


if __name__ == "__main__":
    run_main(main)
