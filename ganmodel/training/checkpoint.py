"""Full-state checkpoints as plain state dicts (loaded with `weights_only=True`, never pickled
classes): G, D, EMA, both optimisers, epoch, step, the fixed evaluation noise, and the RNG state
of every rank (one small file per rank, so ranks never write the same file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ganmodel.errors import GanModelError, brief
from ganmodel.training.loop import Context, GanState, unwrap

STATE_FILE = "state.pt"
GENERATOR_FILE = "generator.pt"


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


def rng_state(ctx: Context) -> dict[str, torch.Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(ctx.device)
    return out


def state_dict(state: GanState) -> dict[str, Any]:
    return {
        "g": unwrap(state.g).state_dict(),
        "d": unwrap(state.d).state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else {},
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "fixed_noise": state.fixed_noise.cpu(),
        "epoch": state.epoch,
        "step": state.step,
        "history": state.history,
    }


def load_state_dict(state: GanState, sd: dict[str, Any], ctx: Context) -> None:
    """Restore a `GanState` in place; every rank loads the same global state and its own RNG."""
    unwrap(state.g).load_state_dict(sd["g"])
    unwrap(state.d).load_state_dict(sd["d"])
    if state.ema is not None:
        if not sd["ema"]:
            raise GanModelError("checkpoint has no EMA weights but train.ema_decay > 0")
        state.ema.load_state_dict(sd["ema"])
    state.opt_g.load_state_dict(sd["opt_g"])
    state.opt_d.load_state_dict(sd["opt_d"])
    state.fixed_noise = sd["fixed_noise"].to(ctx.device)
    state.epoch, state.step = int(sd["epoch"]), int(sd["step"])
    state.history = list(sd.get("history", []))
    rng = sd.get("rng")
    if rng:
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and ctx.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], ctx.device)


def save_checkpoint(state: GanState, ctx: Context, directory: str | os.PathLike[str]) -> None:
    """Write this rank's part of a checkpoint: rank 0 the global state, each rank its RNG."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        torch.save(state_dict(state), d / STATE_FILE)
    torch.save(rng_state(ctx), d / _rng_file(ctx.rank))


def load_checkpoint(directory: str | os.PathLike[str], ctx: Context) -> dict[str, Any]:
    """Read a checkpoint directory for this rank."""
    d = Path(directory)
    path = d / STATE_FILE
    if not path.is_file():
        raise GanModelError(f"{path}: checkpoint state not found")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    rng_path = d / _rng_file(ctx.rank)
    if rng_path.is_file():
        sd["rng"] = torch.load(rng_path, map_location="cpu", weights_only=True)
    return sd


def save_generator(state_dict_g: dict[str, torch.Tensor], meta: dict[str, Any],
                   path: str | os.PathLike[str]) -> None:
    """The shipped generator file: weights plus the arch/z_dim needed to rebuild it."""
    torch.save({"state_dict": state_dict_g, "meta": meta}, path)


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a generator from a file written by `save_generator`."""
    from ganmodel.networks import GENERATORS, build_generator

    p = Path(path)
    if not p.is_file():
        raise GanModelError(f"{p}: generator file not found")
    try:
        obj = torch.load(p, map_location=device, weights_only=True)
        meta, sd = obj["meta"], obj["state_dict"]
    except Exception as err:  # noqa: BLE001
        raise GanModelError(f"{p}: not a ganmodel generator file ({brief(err)})") from None
    if meta.get("arch") not in GENERATORS:
        raise GanModelError(f"{p}: unknown generator architecture {meta.get('arch')!r}")
    try:
        g = build_generator(meta["arch"], int(meta["z_dim"]))
        g.load_state_dict(sd)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise GanModelError(f"{p}: weights do not match arch {meta.get('arch')!r}, "
                            f"z_dim {meta.get('z_dim')!r} ({brief(err)})") from None
    return g.to(device).eval()
