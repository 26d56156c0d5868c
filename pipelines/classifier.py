"""DVC stage `classifier`: train the evaluation feature network on the real train split.

Labelled data gets the classifier (its test accuracy must clear the floor); the rotation network
(label-free, Gidaris et al. 2018) is trained where `classifier.feature_network` needs it. Which
network ships is chosen by how widely each spreads the calibration ladder on val
(`ganmodel/classifier/choice.py`); the choice, its reason and every ladder measured are in
`metrics/classifier.json` and the shipped file's meta (evaluate passes them on). The splits are
loaded whole or streamed in bounded batches by `train.data_loading` (the rule every stage follows)."""

from __future__ import annotations

import argparse

from ganmodel.config import load_params, min_classifier_accuracy
from ganmodel.data.prepared import is_labelled, read_meta
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.errors import GanModelError
from ganmodel.evaluation.sources import open_splits
from ganmodel.io import OutputSet, write_json
from ganmodel.tracking.runs import (
    CLASSIFIER_HASH_TAG,
    DATA_HASH_TAG,
    read_upstream,
    run_ids,
    run_link,
    stage_run,
)


def _rounded(d: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", required=True)
    ap.add_argument("--upstream", nargs="+", required=True, metavar="STAGE=RUN_FILE")
    ap.add_argument("--model", required=True, help="output: feature network weights")
    ap.add_argument("--confusion", required=True, help="output: confusion matrix PNG")
    ap.add_argument("--metrics", required=True, help="output: accuracy, ladders and choice JSON")
    ap.add_argument("--run-file", required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    cfg = params.classifier
    meta = read_meta(args.prepared)
    classes, labelled = meta["classes"], is_labelled(meta)
    floor = min_classifier_accuracy(params, len(classes))
    upstream = read_upstream(args.upstream, required=("prepare",))
    loading, splits = open_splits(args.prepared, params.train.data_loading)
    print(f"classifier: data loading {loading} (train.data_loading {params.train.data_loading})")

    with stage_run("classifier", params.tracking.experiment, {"classifier": cfg.model_dump()},
                   upstream=run_ids(upstream), tags={DATA_HASH_TAG: meta["data_hash"]}) as run:
        from ganmodel.artifacts import save_classifier, weights_hash
        from ganmodel.classifier.choice import select_feature_network
        from ganmodel.evaluation.ladder import blur1_ratio
        from ganmodel.figures import confusion_png
        from ganmodel.networks.selfsup import ROTATION_NAMES

        run.log_dataset(meta, args.prepared, context="training")
        sel = select_feature_network(cfg, splits["train"], splits["val"], splits["test"], len(classes),
                                     labelled)
        clf, rot = sel.classifier, sel.rotation
        for h in sel.history:  # each network's curves under its own keys, by epoch
            run.log_metrics({k: v for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
        clf_hash = weights_hash(sel.model.state_dict())
        summary: dict = {"feature_network": sel.choice.kind, "choice_reason": sel.choice.reason}
        if clf is not None:
            summary.update(test_accuracy=round(clf.test_accuracy, 5),
                           test_balanced_accuracy=round(clf.test_balanced_accuracy, 5),
                           min_accuracy=floor, class_balance="balanced" if clf.balanced else "none")
            summary["val_balanced_accuracy" if clf.balanced else "val_accuracy"] = round(clf.val_accuracy, 5)
            run.log_dict({"classes": classes, "matrix": clf.confusion.tolist()}, "confusion_matrix.json")
        if rot is not None:
            summary.update(rotation_test_accuracy=round(rot.test_accuracy, 5),
                           rotation_val_accuracy=round(rot.val_accuracy, 5))
        for kind, ladder in sel.ladders.items():
            summary.update({f"choice_{kind}_{k.removeprefix('ladder_')}": v
                            for k, v in _rounded(ladder).items()})
        wall = sum(r.wall_time_s for r in (clf, rot) if r is not None)
        summary.update(classifier_hash=clf_hash, wall_time_s=round(wall, 1))
        run.log_metrics({k: v for k, v in summary.items() if isinstance(v, float | int)})
        run.set_tags({CLASSIFIER_HASH_TAG: clf_hash, "feature_network": sel.choice.kind,
                      "choice_reason": sel.choice.reason})
        if clf is not None and clf.test_accuracy < floor:
            raise GanModelError(
                f"classifier: test accuracy {clf.test_accuracy:.4f} is below the floor {floor:.2f} for "
                f"{meta['dataset']}; raise classifier.epochs or check the data")
        file_meta = {"data_hash": meta["data_hash"], "dataset": meta["dataset"], "classes": classes,
                     "hash": clf_hash, "choice_reason": sel.choice.reason,
                     "choice_blur1_ratios": {k: blur1_ratio(v) for k, v in sel.ladders.items()}}
        with OutputSet() as out:
            save_classifier(sel.model, file_meta, out.path(args.model))
            if clf is not None:
                confusion_png(clf.confusion, classes, out.path(args.confusion),
                              f"{meta['dataset']} test confusion (acc {clf.test_accuracy:.4f})")
            else:  # unlabelled: the rotation network's own task is what can be shown
                confusion_png(rot.confusion, list(ROTATION_NAMES), out.path(args.confusion),
                              f"{meta['dataset']} rotation prediction, test (acc {rot.test_accuracy:.4f})")
            summary["stage_wall_time_s"] = round(stage_wall_time_s(), 1)
            run.log_metrics({"stage_wall_time_s": summary["stage_wall_time_s"]})
            write_json(out.path(args.metrics), summary)
            write_json(out.path(args.run_file), run_link(run, classifier_hash=clf_hash))
            run.log_artifact(out.path(args.model), "classifier")
            run.log_artifact(out.path(args.confusion))
        accuracy = (f"test accuracy {clf.test_accuracy:.4f} (floor {floor:.2f})" if clf is not None
                    else f"rotation test accuracy {rot.test_accuracy:.4f}")
        print(f"classifier: {accuracy}; ships {sel.choice.kind} features ({sel.choice.reason}), "
              f"{wall:.0f}s, run {run.info.run_id}")


if __name__ == "__main__":
    run_main(main)
