"""DVC stage `prepare`: raw dataset -> one compact uint8 tensor file per split + content hash."""

from __future__ import annotations

import argparse

from ganmodel.config import load_params
from ganmodel.data.prepared import data_hash, make_splits, save_prepared, split_counts
from ganmodel.data.sources import load_raw
from ganmodel.entry import run_main, stage_wall_time_s
from ganmodel.io import OutputSet, write_json
from ganmodel.tracking.runs import DATA_HASH_TAG, run_link, stage_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out-dir", required=True, help="prepared splits directory")
    ap.add_argument("--metrics", required=True, help="data hash and counts per split (JSON)")
    ap.add_argument("--run-file", required=True, help="MLflow run link (JSON)")
    args = ap.parse_args()
    params = load_params(args.params)
    p = params.data

    with stage_run("prepare", params.tracking.experiment, {"data": p.model_dump()}) as run:
        raw = load_raw(p.dataset, p.raw_dir, p.download)
        splits = make_splits(raw, p.val_fraction, p.test_fraction, p.seed)
        digest = data_hash(splits)
        counts = split_counts(splits, len(raw.classes))
        meta = {"dataset": p.dataset, "data_hash": digest, "classes": list(raw.classes),
                "image_shape": [1, 28, 28], "splits": {k: v["count"] for k, v in counts.items()},
                "class_counts": {k: v["per_class"] for k, v in counts.items()}}
        run.set_tags({DATA_HASH_TAG: digest})
        run.log_metrics({f"{s}_count": c["count"] for s, c in counts.items()})
        run.log_dict(counts, "counts.json")
        with OutputSet() as out:
            save_prepared(out.path(args.out_dir), splits, meta)
            run.log_dataset(meta, args.out_dir, context="prepared")
            wall = round(stage_wall_time_s(), 1)
            run.log_metrics({"stage_wall_time_s": wall})
            # Per-class counts live in meta.json and MLflow: thirty metric columns would bury the rest.
            write_json(out.path(args.metrics), {"data_hash": digest, "stage_wall_time_s": wall,
                                                **{k: {"count": v["count"]} for k, v in counts.items()}})
            write_json(out.path(args.run_file), run_link(run, data_hash=digest))
        print(f"prepared {p.dataset}: " + ", ".join(f"{s} {c['count']}" for s, c in counts.items())
              + f"; data hash {digest[:12]}")


if __name__ == "__main__":
    run_main(main)
