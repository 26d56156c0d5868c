"""Full-state checkpoints as plain state dicts (loaded with `weights_only=True`, never pickled
classes): G, D, EMA, both optimisers, epoch, step, the fixed evaluation noise, and the RNG state
of every rank (one small file per rank, so ranks never write the same file)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganmodel.errors import GanModelError
from ganmodel.training.state import Context, GanState, rng_state, state_dict

STATE_FILE = "state.pt"


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


def save_checkpoint(state: GanState, ctx: Context, directory: str | os.PathLike[str]) -> None:
    """Write this rank's part of a checkpoint: rank 0 the global state, each rank its RNG."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        torch.save(state_dict(state), d / STATE_FILE)
    torch.save(rng_state(ctx), d / _rng_file(ctx.rank))


def load_checkpoint(directory: str | os.PathLike[str], ctx: Context) -> dict[str, Any]:
    """Read a checkpoint directory for this rank: the global state plus this rank's RNG."""
    d = Path(directory)
    path = d / STATE_FILE
    if not path.is_file():
        raise GanModelError(f"{path}: checkpoint state not found")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    rng_path = d / _rng_file(ctx.rank)
    if rng_path.is_file():
        sd["rng"] = torch.load(rng_path, map_location="cpu", weights_only=True)
    return sd


def epoch_reporter(ctx: Context, report: Callable[..., None], checkpoint_cls: Any,
                   hooks: list[Callable[[int, int], None]]) -> Callable[..., None]:
    """The loop's `report` callback for Ray: each epoch's metrics (and `epoch`) through `report`
    (`ray.train.report` on a Train worker, `ray.tune.report` in a Tune trial), with this rank's
    checkpoint as a `checkpoint_cls` (that API's `Checkpoint`) when one is due, then the epoch hooks."""
    def fn(epoch: int, metrics: dict[str, float], state: GanState, due: bool) -> None:
        metrics = {**metrics, "epoch": epoch}
        if due:
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint(state, ctx, d)
                report(metrics, checkpoint=checkpoint_cls.from_directory(d))
        else:
            report(metrics)
        for hook in hooks:
            hook(epoch, ctx.rank)

    return fn
