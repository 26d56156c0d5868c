"""DVC stage `register`: log the generator as a pyfunc model, register it once per weights, and
move alias `champion` only past the quality gate (see ganmodel/registry.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganmodel.config import load_params
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.errors import GanModelError, brief
from ganmodel.io import OutputSet, write_json
from ganmodel.runs import DATA_HASH_TAG, git_commit, read_run_file, run_link, stage_run

# Upstream stage -> the option naming its run link file.
UPSTREAM = {"prepare": "--prepare-run", "classifier": "--classifier-run", "train": "--train-run",
            "evaluate": "--eval-run"}


def read_metrics(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise GanModelError(f"{p}: evaluation metrics not found; run the evaluate stage first")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise GanModelError(f"{p}: not valid JSON ({brief(err)})") from None


def check_lineage(metrics: dict, links: dict[str, dict], source: str) -> None:
    """The evaluation must describe this data and this classifier (else it is stale)."""
    for key, stage in (("data_hash", "train"), ("classifier_hash", "classifier")):
        theirs = links[stage].get(key)
        if theirs is not None and key in metrics and str(metrics[key]) != str(theirs):
            raise GanModelError(f"{source}: {key} {str(metrics[key])[:12]} differs from the {stage} stage's "
                                f"{str(theirs)[:12]}; re-run the evaluate stage")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--generator", required=True, help="generator weights (train stage)")
    ap.add_argument("--eval-metrics", required=True, help="metrics JSON of the evaluate stage")
    for stage, option in UPSTREAM.items():
        ap.add_argument(option, required=True, dest=f"{stage}_run", help=f"run link of the {stage} stage")
    ap.add_argument("--out", required=True, help="output: registration result + run link (JSON)")
    ap.add_argument("--metrics", required=True, help="output: registration metrics (JSON)")
    args = ap.parse_args()
    params = load_params(args.params)
    cfg = params.register
    if not Path(args.generator).is_file():
        raise GanModelError(f"{args.generator}: generator file not found; run the train stage first")
    from ganmodel.registry import check_metrics

    metrics = read_metrics(args.eval_metrics)
    check_metrics(metrics, args.eval_metrics)  # before anything indexes it
    links = {s: read_run_file(getattr(args, f"{s}_run")) for s in UPSTREAM}
    check_lineage(metrics, links, args.eval_metrics)
    upstream = {s: link["run_id"] for s, link in links.items()}

    with stage_run("register", params.tracking.experiment, {"register": cfg.model_dump()},
                   upstream=upstream, tags={DATA_HASH_TAG: str(metrics["data_hash"])}) as run:
        import mlflow

        from ganmodel.registry import register_generator

        result = register_generator(args.generator, metrics, cfg,
                                    run_ids={**upstream, "register": run.info.run_id},
                                    params=params.model_dump(), git_commit=git_commit("."))
        mlflow.set_tags({"register.model_name": result["model_name"], "register.version": result["version"],
                         "register.decision": result["decision"], "register.reason": result["reason"]})
        summary = {"version": result["version"], "champion_version": result["champion_version"],
                   "is_champion": int(result["decision"] == "champion"), "created": int(result["created"])}
        with OutputSet() as out:
            summary["stage_wall_time_s"] = round(stage_wall_time_s(), 1)
            mlflow.log_metrics({k: float(v) for k, v in summary.items() if v is not None})
            write_json(out.path(args.out), run_link(run, **result))
            write_json(out.path(args.metrics), summary)


if __name__ == "__main__":
    run_main(main)
