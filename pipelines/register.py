"""DVC stage `register`: register the train run's logged generator once per weights, and move
alias `champion` only past the quality gate (see ganmodel/registry/gate.py). The version's
description is its model card (ganmodel/registry/card.py): the prepared data's meta.json, the
recipe, the evaluation's figures and the evaluate run's sample sheet."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganmodel.config import load_params
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.errors import GanModelError, brief
from ganmodel.io import OutputSet, write_json
from ganmodel.tracking.runs import DATA_HASH_TAG, git_commit, read_upstream, run_ids, run_link, stage_run

UPSTREAM = ("prepare", "classifier", "train", "evaluate")


def read_metrics(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise GanModelError(f"{p}: evaluation metrics not found; run the evaluate stage first")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise GanModelError(f"{p}: not valid JSON ({brief(err)})") from None


def check_lineage(metrics: dict, links: dict[str, dict], source: str) -> None:
    """The evaluation must describe this data, this classifier and this training run."""
    for key, stage, theirs_key in (("data_hash", "train", "data_hash"),
                                   ("classifier_hash", "classifier", "classifier_hash"),
                                   ("generator_hash", "train", "weights_hash")):
        theirs = links[stage].get(theirs_key)
        if theirs is not None and str(metrics[key]) != str(theirs):
            raise GanModelError(f"{source}: {key} {str(metrics[key])[:12]} differs from the {stage} stage's "
                                f"{str(theirs)[:12]}; re-run the evaluate stage")
    if "model_id" not in links["train"]:
        raise GanModelError("the train stage's run link has no model_id (written by an older version); "
                            "re-run the train stage")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--generator", required=True, help="generator weights (train stage)")
    ap.add_argument("--eval-metrics", required=True, help="metrics JSON of the evaluate stage")
    ap.add_argument("--prepared", default=None,
                    help="prepared data directory (its meta.json, for the model card)")
    ap.add_argument("--samples-artifact", default=None,
                    help="the sample sheet's artifact path in the evaluate run (for the model card)")
    ap.add_argument("--upstream", nargs="+", required=True, metavar="STAGE=RUN_FILE")
    ap.add_argument("--out", required=True, help="output: registration result + run link (JSON)")
    ap.add_argument("--metrics", required=True, help="output: registration metrics (JSON)")
    args = ap.parse_args()
    params = load_params(args.params)
    cfg = params.register
    from ganmodel.registry.gate import check_metrics
    from ganmodel.registry.register import check_evaluated

    metrics = read_metrics(args.eval_metrics)
    check_metrics(metrics, args.eval_metrics)  # before anything indexes it
    links = read_upstream(args.upstream, required=UPSTREAM)
    check_lineage(metrics, links, args.eval_metrics)
    check_evaluated(args.generator, metrics, args.eval_metrics)  # refused before any run or version
    data_meta = None
    if args.prepared is not None:
        from ganmodel.data.prepared import read_meta

        data_meta = read_meta(args.prepared)
        if data_meta.get("data_hash") != metrics["data_hash"]:
            theirs, ours = str(data_meta.get("data_hash"))[:12], str(metrics["data_hash"])[:12]
            raise GanModelError(f"{args.prepared}: data hash {theirs} differs from the evaluation's {ours}; "
                                "re-run the pipeline")
    samples = None
    if args.samples_artifact:
        from ganmodel.registry.card import SampleSheet

        ev = links.get("evaluate", {})
        samples = SampleSheet(str(ev["run_id"]), str(ev.get("experiment_id", "")), args.samples_artifact)

    with stage_run("register", params.tracking.experiment, {"register": cfg.model_dump()},
                   upstream=run_ids(links), tags={DATA_HASH_TAG: str(metrics["data_hash"])}) as run:
        from ganmodel.registry.register import register_generator

        result = register_generator(args.generator, metrics, cfg, model_id=links["train"]["model_id"],
                                    run_ids={**run_ids(links), "register": run.run_id},
                                    git_commit=git_commit("."), source=args.eval_metrics,
                                    data_meta=data_meta, samples=samples)
        run.set_tags({"register.model_name": result["model_name"], "register.version": result["version"],
                      "register.decision": result["decision"], "register.reason": result["reason"]})
        summary = {"version": result["version"], "champion_version": result["champion_version"],
                   "is_champion": int(result["decision"] == "champion"), "created": int(result["created"])}
        with OutputSet() as out:
            summary["stage_wall_time_s"] = round(stage_wall_time_s(), 1)
            run.log_metrics({k: float(v) for k, v in summary.items() if v is not None})
            write_json(out.path(args.out), run_link(run, **result))
            write_json(out.path(args.metrics), summary)


if __name__ == "__main__":
    run_main(main)
