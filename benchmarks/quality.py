"""Quality per compute: each recipe trained for the same wall-clock budget, then evaluated under the
evaluate stage's protocol, side by side in one table.

    python benchmarks/quality.py [--seconds 180] [--recipes seed,mlp_leaky,...] [--threads N]
        [--prepared data/prepared] [--classifier models/classifier.pt] [--params params.yaml]
        [--out docs/quality] [--json-out FILE]

Needs the pipeline's prepared data and evaluation classifier (`dvc repro classifier`). Every recipe
runs the pipeline's training loop in the pipeline's process layout on one machine: one process with
all cores (what a local `dvc repro` runs: one Ray worker that reserves every CPU). Training stops
at the end of the first epoch that crosses the budget, so each recipe gets the budget (plus at most
one epoch); the steps it managed and its images/s are in the table. Evaluation is the evaluate
stage's own `ganmodel.evaluation.protocol.evaluate` with params.yaml's `evaluate` section: same N,
seed, classifier, real floor; cond_accuracy and cas only exist for conditional recipes.

Writes `<out>/<recipe>.png` (the evaluate stage's sample sheet: a row per class for a conditional
recipe) and `<out>/table.md`, and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ganmodel.config import PRESETS  # noqa: E402

# The rows: a preset, or `custom` with its recipe keys. "today's default" is the default before
# this work (mlp_leaky); the presets are what params.yaml can name.
RECIPES: dict[str, dict[str, Any]] = {
    "seed": {"preset": "seed"},
    "mlp_leaky": {"preset": "mlp_leaky"},
    "mlp_leaky_cond": {**PRESETS["mlp_leaky"], "preset": "custom", "conditional": True},
    "dcgan_bce": {"preset": "custom", "arch": "dcgan", "loss": "bce", "betas": (0.5, 0.999),
                  "ema_decay": 0.999, "ema_rampup": True},
    "dcgan_hinge_sn": {"preset": "custom", "arch": "dcgan", "loss": "hinge", "spectral_norm": True,
                       "lr_g": 1e-3, "lr_d": 1e-3, "betas": (0.0, 0.9), "batch_size": 64, "z_dim": 64,
                       "ema_decay": 0.999, "ema_rampup": True},
    "conv_sn": {"preset": "conv_sn"},
    "conv_sn_diffaug": {"preset": "custom", "arch": "conv", "loss": "hinge", "spectral_norm": True,
                        "lr_g": 2e-3, "lr_d": 2e-3, "betas": (0.0, 0.9), "batch_size": 64, "z_dim": 64,
                        "ema_decay": 0.999, "ema_rampup": True, "augment": ("translation", "cutout")},
    "conv_sn_r1": {"preset": "custom", "arch": "conv", "loss": "hinge", "spectral_norm": True,
                   "lr_g": 2e-3, "lr_d": 2e-3, "betas": (0.0, 0.9), "batch_size": 64, "z_dim": 64,
                   "ema_decay": 0.999, "ema_rampup": True, "r1_gamma": 0.1},
    "conv_wgan_gp": {"preset": "custom", "arch": "conv", "loss": "wgan_gp", "lr_g": 2e-4, "lr_d": 2e-4,
                     "betas": (0.0, 0.9), "batch_size": 64, "z_dim": 64, "d_steps": 2,
                     "ema_decay": 0.999, "ema_rampup": True},
    "conv_sn_cond": {"preset": "conv_sn_cond"},
    # For colour folders (run with --prepared of a folder and --classifier of a feature net of its own).
    "conv_sn_cond_da": {"preset": "conv_sn_cond_da"},
    "conv_sn_cond_da_no_mbstd": {**PRESETS["conv_sn_cond_da"], "preset": "custom", "mbstd_group": 0},
    # The class sampling of an imbalanced folder (`train.class_sampling`; auto is sqrt there) against
    # the data's own class frequencies.
    "conv_sn_cond_da_data_sampling": {"preset": "conv_sn_cond_da", "class_sampling": "data"},
}
COLUMNS = ("recipe", "steps", "img/s", "fid", "fid_ratio", "precision", "recall", "classes",
           "cond_accuracy", "cas")


class _TimeUp(Exception):
    pass


def train_for(cfg, split, n_classes: int, seconds: float) -> tuple[Any, int, float, float]:
    """Train until the first epoch end past `seconds`; returns (state, steps, img/s, seconds)."""
    from ganmodel.training.loop import train
    from ganmodel.training.state import Context

    t0 = time.perf_counter()
    box: dict[str, Any] = {}

    def report(epoch: int, metrics: dict[str, float], state, due: bool) -> None:
        box["state"] = state
        if time.perf_counter() - t0 >= seconds:
            raise _TimeUp

    with contextlib.suppress(_TimeUp):
        box["state"] = train(cfg, split.images, Context(), report=report, log=lambda _m: None,
                             labels=split.labels, n_classes=n_classes)
    dt = time.perf_counter() - t0
    state = box["state"]
    return state, state.step, state.step * cfg.batch_size / dt, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=180.0, help="training budget per recipe")
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"some of {', '.join(RECIPES)}")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--prepared", default=str(ROOT / "data" / "prepared"))
    ap.add_argument("--classifier", default=str(ROOT / "models" / "classifier.pt"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "quality"))
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()

    from ganmodel.artifacts import load_classifier
    from ganmodel.config import load_params, parse_params, read_params
    from ganmodel.data.prepared import load_split, read_meta
    from ganmodel.evaluation.protocol import evaluate, heldout
    from ganmodel.figures import save_grid
    from ganmodel.training.state import sampling_generator

    torch.set_num_threads(args.threads)
    names = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if unknown := [r for r in names if r not in RECIPES]:
        sys.exit(f"error: --recipes: unknown recipe {unknown[0]!r}; expected some of {', '.join(RECIPES)}")
    params = load_params(args.params)
    raw = read_params(args.params)
    meta = read_meta(args.prepared)
    train_split = load_split(args.prepared, "train")
    held = heldout(load_split(args.prepared, "val"), load_split(args.prepared, "test"))
    classifier, _ = load_classifier(args.classifier)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"quality per compute: {args.seconds:.0f} s of training per recipe, {args.threads} threads, "
          f"{meta['dataset']} ({train_split.images.shape[0]} train images), N={params.evaluate.n_samples}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)

    from ganmodel.config import RECIPE_KEYS

    def recipe(name: str):
        """The recipe on top of params.yaml's non-recipe train keys (seed, ...), one process."""
        train_raw = {k: v for k, v in (raw.get("train") or {}).items() if k not in RECIPE_KEYS}
        train_raw.update(RECIPES[name], num_workers=1, epochs=10_000, eval_every=0, steps_per_epoch=None)
        return parse_params({**raw, "train": train_raw}, f"recipe {name}").train

    configs = {name: recipe(name) for name in names}  # all validated before the first one trains
    rows = []
    for name in names:
        cfg = configs[name]
        state, steps, rate, dt = train_for(cfg, train_split, len(meta["classes"]), args.seconds)
        res = evaluate(sampling_generator(state).eval(), classifier, train_split, held, params.evaluate,
                       meta["classes"])
        save_grid(res.grid, out_dir / f"{name}.png", nrow=res.grid_cols)
        m = res.metrics
        row = {"recipe": name, "steps": steps, "img/s": round(rate), "train_s": round(dt, 1),
               **{k: m.get(k) for k in ("fid", "fid_floor", "fid_ratio", "precision", "recall",
                                       "cond_accuracy", "cond_accuracy_floor", "cas", "cas_floor")},
               "classes": m.get("classes_covered")}
        rows.append(row)
        print(" | ".join(_fmt(row.get(c)) for c in COLUMNS), flush=True)

    floor = rows[0] if rows else {}
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    note = (f"\nBudget {args.seconds:.0f} s of training per recipe, {args.threads} threads, N = "
            f"{params.evaluate.n_samples}; fid_floor {_fmt(floor.get('fid_floor'))}, cond_accuracy floor "
            f"{_fmt(next((r['cond_accuracy_floor'] for r in rows if r.get('cond_accuracy_floor')), None))}, "
            f"cas floor {_fmt(next((r['cas_floor'] for r in rows if r.get('cas_floor')), None))}.\n")
    (out_dir / "table.md").write_text("\n".join(table) + "\n" + note)
    print("\n" + "\n".join(table) + note)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and v.is_integer() and abs(v) < 100:
        return str(int(v))  # counts such as classes covered
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


if __name__ == "__main__":
    main()
