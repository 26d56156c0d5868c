"""DVC stage `prepare`: raw dataset (built-in, or a folder/archive of images) -> Parquet shards per
split (uint8 images and labels) + content hash."""

from __future__ import annotations

import argparse

from ganmodel.entry import run_main, stage_wall_time_s


def main() -> None:
    # Imported here, not at the top: the processes that decode a folder are spawned, and each one
    # imports this script again; they need none of torch, pydantic or MLflow.
    from ganmodel.config import load_params
    from ganmodel.data.build import prepare_dataset
    from ganmodel.data.prepared import save_prepared
    from ganmodel.io import OutputSet, write_json
    from ganmodel.tracking.runs import DATA_HASH_TAG, run_link, stage_run

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out-dir", required=True, help="prepared splits directory")
    ap.add_argument("--metrics", required=True, help="data hash, counts per split, files left out (JSON)")
    ap.add_argument("--run-file", required=True, help="MLflow run link (JSON)")
    args = ap.parse_args()
    params = load_params(args.params)
    p = params.data

    with stage_run("prepare", params.tracking.experiment, {"data": p.model_dump()}) as run:
        data = prepare_dataset(p)
        counts, digest = data.counts, data.data_hash
        run.set_tags({DATA_HASH_TAG: digest})
        run.log_metrics({f"{s}_count": c["count"] for s, c in counts.items()})
        run.log_dict(counts, "counts.json")
        if data.source is not None:
            run.log_source(data.source)
        with OutputSet() as out:
            save_prepared(out.path(args.out_dir), data.splits, data.meta)
            run.log_dataset(data.meta, args.out_dir, context="prepared")
            wall = round(stage_wall_time_s(), 1)
            run.log_metrics({"stage_wall_time_s": wall})
            # Per-class counts live in meta.json and MLflow: thirty metric columns would bury the rest.
            write_json(out.path(args.metrics), {"data_hash": digest, "stage_wall_time_s": wall,
                                                **{k: {"count": v["count"]} for k, v in counts.items()},
                                                **data.report})
            write_json(out.path(args.run_file), run_link(run, data_hash=digest))
        shape = "x".join(map(str, data.meta["image_shape"]))
        print(f"prepared {p.dataset}: " + ", ".join(f"{s} {c['count']}" for s, c in counts.items())
              + f"; {len(data.meta['classes'])} classes, {shape}; data hash {digest[:12]}")


if __name__ == "__main__":
    run_main(main)
