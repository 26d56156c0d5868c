"""DVC stage `classifier`: train the evaluation feature network on the real train split."""

from __future__ import annotations

import argparse

from ganmodel.config import load_params, min_classifier_accuracy
from ganmodel.data.prepared import load_split, read_meta
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.errors import GanModelError
from ganmodel.io import OutputSet, write_json
from ganmodel.tracking.runs import (
    CLASSIFIER_HASH_TAG,
    DATA_HASH_TAG,
    read_upstream,
    run_ids,
    run_link,
    stage_run,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", required=True)
    ap.add_argument("--upstream", nargs="+", required=True, metavar="STAGE=RUN_FILE")
    ap.add_argument("--model", required=True, help="output: classifier weights")
    ap.add_argument("--confusion", required=True, help="output: confusion matrix PNG")
    ap.add_argument("--metrics", required=True, help="output: accuracy JSON")
    ap.add_argument("--run-file", required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    cfg = params.classifier
    floor = min_classifier_accuracy(params)
    meta = read_meta(args.prepared)
    upstream = read_upstream(args.upstream, required=("prepare",))
    splits = {s: load_split(args.prepared, s) for s in ("train", "val", "test")}

    with stage_run("classifier", params.tracking.experiment, {"classifier": cfg.model_dump()},
                   upstream=run_ids(upstream), tags={DATA_HASH_TAG: meta["data_hash"]}) as run:
        from ganmodel.artifacts import save_classifier, weights_hash
        from ganmodel.classifier.training import train_classifier
        from ganmodel.figures import confusion_png

        run.log_dataset(meta, args.prepared, context="training")
        classes = meta["classes"]
        res = train_classifier(cfg, splits["train"], splits["val"], splits["test"], len(classes))
        for h in res.history:
            run.log_metrics({"train_loss": h["train_loss"], "val_accuracy": h["val_accuracy"]},
                            step=int(h["epoch"]))
        clf_hash = weights_hash(res.model.state_dict())
        run.log_metrics({"test_accuracy": res.test_accuracy, "best_val_accuracy": res.val_accuracy,
                         "wall_time_s": res.wall_time_s})
        run.set_tags({CLASSIFIER_HASH_TAG: clf_hash})
        run.log_dict({"classes": classes, "matrix": res.confusion.tolist()}, "confusion_matrix.json")
        if res.test_accuracy < floor:
            raise GanModelError(
                f"classifier: test accuracy {res.test_accuracy:.4f} is below the floor {floor:.2f} for "
                f"{meta['dataset']}; raise classifier.epochs or check the data")
        summary = {"test_accuracy": round(res.test_accuracy, 5),
                   "val_accuracy": round(res.val_accuracy, 5), "min_accuracy": floor,
                   "classifier_hash": clf_hash, "wall_time_s": round(res.wall_time_s, 1)}
        with OutputSet() as out:
            save_classifier(res.model, {"data_hash": meta["data_hash"], "dataset": meta["dataset"],
                                        "classes": classes, "hash": clf_hash}, out.path(args.model))
            confusion_png(res.confusion, classes, out.path(args.confusion),
                          f"{meta['dataset']} test confusion (acc {res.test_accuracy:.4f})")
            summary["stage_wall_time_s"] = round(stage_wall_time_s(), 1)
            run.log_metrics({"stage_wall_time_s": summary["stage_wall_time_s"]})
            write_json(out.path(args.metrics), summary)
            write_json(out.path(args.run_file), run_link(run, classifier_hash=clf_hash))
            run.log_artifact(out.path(args.model), "classifier")
            run.log_artifact(out.path(args.confusion))
        print(f"classifier: test accuracy {res.test_accuracy:.4f} (floor {floor:.2f}), "
              f"{res.wall_time_s:.0f}s, run {run.info.run_id}")


if __name__ == "__main__":
    run_main(main)
