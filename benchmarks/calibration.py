"""Calibrate the evaluate protocol: oracle "generators" (real images served through the generator
interface, `ganmodel.evaluation.oracles`) scored by the very code that scores a generator, side by
side with a trained generator when one is given, over one or more evaluate seeds.

    python benchmarks/calibration.py --prepared data/prepared --classifier models/classifier.pt \
        [--generator models/generator.pt] [--n 400] [--seeds 1234] [--cas-epochs 30]

Set B (the floor's held-out sample) is drawn from val and the held-out oracle from test, so the
two never share an image; a trained generator is evaluated as the evaluate stage does (B from
val + test). Prints one JSON line per (generator, seed) and, with several seeds, mean and sd.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

KEYS = ("fid_ratio", "fid", "fid_floor", "recall", "recall_floor", "coverage", "coverage_floor",
        "classes_covered", "class_kl", "class_kl_floor", "cond_accuracy", "cond_accuracy_floor", "cas",
        "cas_floor", "data_copying", "data_copying_floor", "train_distance_ratio")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--classifier", default="models/classifier.pt")
    ap.add_argument("--generator", default=None)
    ap.add_argument("--n", type=int, default=400, help="evaluate.n_samples (<= the val split)")
    ap.add_argument("--seeds", default="1234", help="comma-separated evaluate seeds")
    ap.add_argument("--cas-epochs", type=int, default=30)
    ap.add_argument("--blur", default="0.5,1,2", help="comma-separated blur sigmas (px) of held-out images")
    args = ap.parse_args()

    import torch

    from ganmodel.artifacts import load_classifier, load_generator
    from ganmodel.config import EvaluateParams
    from ganmodel.data.prepared import load_split, read_meta
    from ganmodel.evaluation.oracles import RealImages, gaussian_blur
    from ganmodel.evaluation.protocol import evaluate, heldout

    meta = read_meta(args.prepared)
    clf, _ = load_classifier(args.classifier)
    train, val, test = (load_split(args.prepared, s) for s in ("train", "val", "test"))
    names, c = meta["classes"], len(meta["classes"])
    seeds = [int(s) for s in args.seeds.split(",")]
    oracles = {
        "held-out images": lambda s: RealImages(test.images, test.labels, c, seed=s),
        "training images": lambda s: RealImages(train.images, train.labels, c, seed=s),
        "one image": lambda s: RealImages(test.images[:1], None, c, seed=s, by_class=False),
        **{f"held-out, blur {b} px": (lambda s, b=float(b): RealImages(test.images, test.labels, c, seed=s,
                                                                        transform=gaussian_blur(b)))
           for b in args.blur.split(",") if b},
    }
    runs = [(name, make, val) for name, make in oracles.items()]
    if args.generator:
        g, _ = load_generator(args.generator)
        runs.append(("trained generator", lambda _s: g, heldout(val, test)))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name, make, held in runs:
        rows = []
        for seed in seeds:
            cfg = EvaluateParams(n_samples=args.n, seed=seed, kid_subset_size=min(500, args.n),
                                 cas_epochs=args.cas_epochs)
            t0 = time.perf_counter()
            m = evaluate(make(seed), clf, train, held, cfg, names).metrics
            rows.append(m)
            print(json.dumps({"generator": name, "seed": seed, "n": args.n,
                              **{k: round(m[k], 4) for k in KEYS if k in m},
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        if len(rows) > 1:
            keys = ("fid_ratio", "data_copying", "data_copying_floor", "recall", "coverage")
            spread = {k: f"{statistics.mean(v):.4f} +- {statistics.stdev(v):.4f}"
                      for k in keys for v in [[r[k] for r in rows]]}
            print(json.dumps({"generator": name, "seeds": len(rows), **spread}), flush=True)


if __name__ == "__main__":
    main()
