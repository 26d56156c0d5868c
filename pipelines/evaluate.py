"""DVC stage `evaluate`: FID/KID/IS/precision/recall/coverage in the feature network's space,
next to the real-vs-real floor at the same N and the calibration ladder (held-out images blurred
by 1, 2, 4 px), plus sample grid and nearest-neighbour sheets. Metrics that need classes are
skipped for unlabelled data, and `skipped` says so. The figures are attached to the train run's
logged model as well, so its MLflow page shows them. The splits are loaded whole or streamed in
bounded batches by `train.data_loading` (the rule every stage follows)."""

from __future__ import annotations

import argparse

from ganmodel.config import load_params
from ganmodel.data.prepared import is_labelled, read_meta
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.errors import GanModelError
from ganmodel.io import OutputSet, write_csv, write_json
from ganmodel.tracking.runs import (
    CLASSIFIER_HASH_TAG,
    DATA_HASH_TAG,
    read_upstream,
    run_ids,
    run_link,
    stage_run,
)

NOT_ON_MODEL = ("eval_time_s", "stage_wall_time_s")  # timings describe the run, not the model
HISTOGRAM_HEADER = "class,generated,real\n"  # the class plot of data without classes: no rows


def choice_figures(clf_meta: dict) -> dict:
    """What the classifier stage chose and why, from the feature network's file: `feature_network`,
    `choice_reason` and each measured network's 1-px blur ratio (`choice_<kind>_blur1_ratio`)."""
    out = {"feature_network": clf_meta.get("feature_network", "labelled")}
    if "choice_reason" in clf_meta:
        out["choice_reason"] = clf_meta["choice_reason"]
    for kind, ratio in (clf_meta.get("choice_blur1_ratios") or {}).items():
        out[f"choice_{kind}_blur1_ratio"] = round(float(ratio), 6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", required=True)
    ap.add_argument("--classifier", required=True, help="classifier weights")
    ap.add_argument("--generator", required=True, help="generator weights")
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
    upstream = read_upstream(args.upstream, required=("prepare", "classifier", "train"))

    from ganmodel.artifacts import GENERATOR, file_weights_hash, load_classifier, load_generator
    from ganmodel.evaluation.features import is_conditional
    from ganmodel.evaluation.protocol import evaluate, evaluation_code_hash, heldout
    from ganmodel.evaluation.sources import open_splits

    classifier, clf_meta = load_classifier(args.classifier)
    n_classes = len(meta["classes"]) if is_labelled(meta) else 0  # what the class head must have
    if n_classes != classifier.n_classes:
        raise GanModelError(f"{args.classifier}: {classifier.n_classes} classes, but {args.prepared} has "
                            f"{n_classes} (0: unlabelled); re-run the classifier stage")
    generator, _ = load_generator(args.generator)
    gen_hash = file_weights_hash(args.generator, GENERATOR)
    train_link = upstream["train"]
    if "model_id" not in train_link or train_link.get("weights_hash") != gen_hash:
        logged = str(train_link.get("weights_hash", "without weights"))[:12]
        raise GanModelError(f"{args.generator}: not the generator the train run logged (run link {logged} "
                            f"vs file {gen_hash[:12]}); re-run the train stage")
    loading, splits = open_splits(args.prepared, params.train.data_loading)
    train, held = splits["train"], heldout(splits["val"], splits["test"])
    print(f"evaluate: data loading {loading} (train.data_loading {params.train.data_loading})")

    with stage_run("evaluate", params.tracking.experiment, {"evaluate": cfg.model_dump()},
                   upstream=run_ids(upstream), tags={DATA_HASH_TAG: meta["data_hash"],
                                                     CLASSIFIER_HASH_TAG: clf_meta["hash"]}) as run:
        from ganmodel.evaluation.coverage import DEFAULT_MIN_RELATIVE_SHARE
        from ganmodel.figures import class_histogram_png, save_grid
        from ganmodel.tracking.models import log_model_metrics
        from ganmodel.tracking.runs import prepared_dataset

        run.log_dataset(meta, args.prepared, context="evaluation")
        res = evaluate(generator, classifier, train, held, cfg, class_names=meta["classes"])
        # With n_samples and eval_seed, these fields are the protocol the register gate compares under.
        summary = {**{k: round(v, 6) if isinstance(v, float) else v for k, v in res.headline.items()},
                   "data_hash": meta["data_hash"], "classifier_hash": clf_meta["hash"],
                   "eval_code_hash": evaluation_code_hash(), "conditional": is_conditional(generator),
                   "generator_hash": gen_hash, "n_classes": n_classes, "ladder_position": res.ladder_position,
                   "skipped": res.skipped, **choice_figures(clf_meta)}
        with OutputSet() as out:
            save_grid(res.grid, out.path(args.samples), nrow=res.grid_cols)  # a row per class
            save_grid(res.nn_sheet, out.path(args.neighbours), nrow=res.nn_cols)
            if res.histogram:
                write_csv(out.path(args.classes), res.histogram)
            else:
                out.path(args.classes).write_text(HISTOGRAM_HEADER)
            class_histogram_png(res.histogram, out.path(args.classes_png),
                                f"{meta['dataset']}: classes of {cfg.n_samples} generated images",
                                DEFAULT_MIN_RELATIVE_SHARE)
            summary["stage_wall_time_s"] = round(stage_wall_time_s(), 1)
            # The headline figures go to this run *and* the train run's logged model (one metric
            # entry each, linked to the model and the dataset); the rest to this run only.
            on_model = {k: v for k, v in res.headline.items() if k not in NOT_ON_MODEL}
            log_model_metrics(train_link["model_id"], on_model, dataset=prepared_dataset(meta, args.prepared))
            run.log_metrics({**{k: v for k, v in res.metrics.items() if k not in on_model},
                             "stage_wall_time_s": summary["stage_wall_time_s"]})
            write_json(out.path(args.metrics), summary)
            write_json(out.path(args.run_file), run_link(run, generator_hash=gen_hash))
            run.set_tags({"ladder_position": res.ladder_position,
                          "feature_network": summary["feature_network"],
                          **{f"skipped.{k}": v for k, v in res.skipped.items()}})
            run.log_dict(summary, "evaluate.json")
            run.log_artifact(out.path(args.samples), "samples")
            run.log_artifact(out.path(args.neighbours), "samples")
            run.log_artifact(out.path(args.classes), "plots")
            run.log_artifact(out.path(args.classes_png), "plots")
        m = res.metrics
        print(f"evaluate (N={cfg.n_samples}, {summary['feature_network']} features): FID {m['fid']:.2f} "
              f"(floor {m['fid_floor']:.2f}, ratio {m['fid_ratio']:.2f}; {res.ladder_position} on the "
              f"ladder: blur1 {m['ladder_blur1_ratio']:.2f}, blur2 {m['ladder_blur2_ratio']:.2f}, blur4 "
              f"{m['ladder_blur4_ratio']:.2f}), KID {_fig(m, 'kid_mean', '.4f')}, "
              f"IS {_fig(m, 'is_mean', '.2f')}, "
              f"precision {_fig(m, 'precision', '.3f')}, recall {_fig(m, 'recall', '.3f')}, classes "
              f"{_fig(m, 'classes_covered', '.0f')}, data copying {m['data_copying']:.2f} (floor "
              f"{m['data_copying_floor']:.2f}), {m['eval_time_s']:.1f}s of metrics, "
              f"{summary['stage_wall_time_s']:.1f}s in all")
        for name, why in res.skipped.items():
            print(f"evaluate: skipped {name}: {why}")



def _fig(m: dict[str, float], key: str, fmt: str) -> str:
    """A figure for the summary line, or "skipped" where evaluate did not compute it (unlabelled
    data has no IS or class figures: the reasons are printed below it, never a 0 or a nan)."""
    return format(m[key], fmt) if key in m else "skipped"


if __name__ == "__main__":
    run_main(main)
