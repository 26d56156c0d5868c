"""What the train stage writes: the generator file, the loss table, the last sample grid."""

from __future__ import annotations

import csv
import os
import platform
from typing import Any

import torch

from ganmodel.artifacts import save_generator
from ganmodel.config import TrainParams
from ganmodel.data.prepared import image_shape
from ganmodel.figures import save_grid
from ganmodel.training.job import TrainOutcome
from ganmodel.training.state import GRID_COLUMNS

LOSS_COLUMNS = ("epoch", "d_loss", "g_loss", "images_per_sec", "fid")


def scaling_params(cfg: TrainParams, n_train: int) -> dict[str, Any]:
    """The resolved scaling, logged as params so a run says how it was executed."""
    import ray

    return {
        "scaling.workers": cfg.num_workers,
        "scaling.global_batch": cfg.batch_size,
        "scaling.per_worker_batch": cfg.batch_size // cfg.num_workers,
        "scaling.device": "cuda" if cfg.use_gpu else "cpu",
        "scaling.precision": cfg.precision,
        "scaling.train_images": n_train,
        "version.torch": torch.__version__,
        "version.ray": ray.__version__,
        "version.python": platform.python_version(),
    }


def generator_meta(cfg: TrainParams, data_meta: dict[str, Any]) -> dict[str, Any]:
    """What a generator file records beside its weights (`ganmodel.artifacts`): what rebuilds it
    (arch, z_dim, conditional, n_classes, image_shape), the class names its labels mean, and its
    data. The image shape is the data's (meta.json's `image_shape`; 1x28x28 where it has none)."""
    classes = list(data_meta.get("classes") or [])
    return {"arch": cfg.arch, "z_dim": cfg.z_dim, "conditional": cfg.conditional,
            "n_classes": len(classes) if cfg.conditional else 0, "classes": classes,
            "dataset": data_meta["dataset"], "data_hash": data_meta["data_hash"], "ema": cfg.ema_decay > 0,
            "image_shape": list(image_shape(data_meta))}


def write_train_outputs(outcome: TrainOutcome, cfg: TrainParams, data_meta: dict[str, Any], *,
                        generator: str | os.PathLike[str], losses: str | os.PathLike[str],
                        samples: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the stage's files; return the headline metrics."""
    from ganmodel.networks import build_generator

    save_generator(outcome.generator, generator_meta(cfg, data_meta), generator)
    with open(losses, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[c for c in LOSS_COLUMNS if c != "fid"
                                          or any("fid" in h for h in outcome.history)],
                           extrasaction="ignore")
        w.writeheader()
        for h in outcome.history:
            w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()})
    meta = generator_meta(cfg, data_meta)
    g = build_generator(cfg.arch, cfg.z_dim, meta["n_classes"], tuple(meta["image_shape"]))
    g.load_state_dict(outcome.generator)
    with torch.no_grad():
        z, y = outcome.fixed_noise.float(), outcome.fixed_labels
        save_grid(g.eval()(z) if y is None else g.eval()(z, y), samples,
                  nrow=GRID_COLUMNS if y is not None else None)
    last = outcome.history[-1] if outcome.history else {}
    return {
        "epochs": len(outcome.history),
        "final_d_loss": last.get("d_loss"),
        "final_g_loss": last.get("g_loss"),
        "steady_images_per_sec": round(outcome.steady_images_per_sec, 1),
        **({"last_quick_fid": round(fids[-1], 4)}
           if (fids := [h["fid"] for h in outcome.history if "fid" in h]) else {}),
        "wall_time_s": round(outcome.wall_time_s, 1),
    }
