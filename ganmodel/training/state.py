"""The training state: where a process sits in the job (`Context`), what a GAN run holds
(`GanState`), how it is built identically on every rank, and its plain state-dict form.

The loop trains a `GanState`; the checkpoint code saves and restores it through `state_dict` /
`load_state_dict`. Both import this module, and it imports neither.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ganmodel.config import TrainParams
from ganmodel.errors import GanModelError
from ganmodel.networks import build_discriminator, build_generator
from ganmodel.shapes import MNIST_SHAPE, buildable

N_FIXED_NOISE = 64
GRID_COLUMNS = 8  # a conditional model's fixed samples: one row of this many per class
# torch >= 2.13 renamed DDP's broadcast_buffers to forward_sync_buffers.
_NO_FORWARD_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


@dataclass(frozen=True)
class Context:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class GanState:
    """Everything a checkpoint must hold (see `state_dict`)."""

    g: nn.Module  # DDP-wrapped when world_size > 1
    d: nn.Module
    ema: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    fixed_noise: torch.Tensor
    fixed_labels: torch.Tensor | None = None  # conditional: the class of each fixed sample
    epoch: int = 0  # epochs completed
    step: int = 0  # global steps completed
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics


def unwrap(m: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return m.module if hasattr(m, "module") else m


def fixed_labels(n_classes: int) -> torch.Tensor:
    """One row of `GRID_COLUMNS` samples per class: 0 0 ... 0 1 1 ... (a conditional grid)."""
    return torch.arange(n_classes).repeat_interleave(GRID_COLUMNS)


def build_state(cfg: TrainParams, ctx: Context, n_classes: int = 0,
                image_shape: tuple[int, ...] = MNIST_SHAPE) -> GanState:
    """Models for images of `image_shape` (C, H, W), optimisers and fixed noise; identical on
    every rank (seeded), then DDP-wrapped. `n_classes` > 0 builds the conditional nets
    (`cfg.conditional` asks for them)."""
    if cfg.conditional and n_classes < 2:
        raise GanModelError(f"train.conditional: needs labelled data with at least 2 classes, "
                            f"got {n_classes}")
    n_classes = n_classes if cfg.conditional else 0
    torch.manual_seed(cfg.seed)
    if (reason := buildable(cfg.arch, image_shape)) is not None:  # params checked it; a loop caller may not
        raise GanModelError(f"train.arch: {cfg.arch} {reason}")
    g = build_generator(cfg.arch, cfg.z_dim, n_classes, image_shape).to(ctx.device)
    d = build_discriminator(cfg.arch, cfg.spectral_norm, n_classes, image_shape,
                            cfg.mbstd_group).to(ctx.device)
    ema = None
    if cfg.ema_decay > 0:
        ema = copy.deepcopy(g).eval().requires_grad_(False)
    if ctx.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # No buffer sync in forward: rank 0's BatchNorm stats would otherwise overwrite the
        # others' at every forward; instead we average buffers across ranks at each epoch end
        # (`sync_buffers`), which uses every rank's data and leaves all ranks identical.
        g = DDP(g, device_ids=ids, **_NO_FORWARD_BUFFER_SYNC)
        d = DDP(d, device_ids=ids, **_NO_FORWARD_BUFFER_SYNC)
    # Fused Adam: the same update in one pass over the parameters instead of ~7; on a 1-thread
    # CPU step it cut Adam from ~17 ms to ~4 ms (benchmarks/README.md). Last-bit rounding differs.
    fused = ctx.device.type in ("cpu", "cuda")
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=cfg.betas, fused=fused)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=cfg.betas, fused=fused)
    gen = torch.Generator().manual_seed(cfg.seed + 7919)
    labels = fixed_labels(n_classes) if n_classes else None
    n_fixed = labels.shape[0] if labels is not None else N_FIXED_NOISE
    fixed = torch.randn(n_fixed, cfg.z_dim, generator=gen).to(ctx.device)
    # Weights are identical on every rank (seeded above); from here each rank draws its own
    # dropout masks and WGAN-GP interpolation weights, as independent samples should.
    torch.manual_seed(cfg.seed * 1_000_003 + 104_729 * (ctx.rank + 1))
    return GanState(g, d, ema, opt_g, opt_d, fixed,
                    labels.to(ctx.device) if labels is not None else None)


def ema_decay_at(cfg: TrainParams, step: int) -> float:
    """The EMA decay at global step `step`: `ema_decay`, or with `ema_rampup` the warm-up
    min(ema_decay, (1 + t) / (10 + t)), so early averages are not dominated by the random init."""
    return min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_rampup else cfg.ema_decay


@torch.no_grad()
def update_ema(ema: nn.Module, g: nn.Module, decay: float) -> None:
    """Polyak average of G's weights (Karras et al. 2018, 'Progressive GANs', sec. A.1)."""
    for pe, p in zip(ema.parameters(), unwrap(g).parameters(), strict=True):
        pe.lerp_(p, 1.0 - decay)
    for be, b in zip(ema.buffers(), unwrap(g).buffers(), strict=True):
        be.copy_(b)


@torch.no_grad()
def sync_buffers(state: GanState, ctx: Context) -> None:
    """Average floating-point buffers (BatchNorm running stats) across ranks."""
    if ctx.world_size == 1:
        return
    for m in (state.g, state.d):
        for b in unwrap(m).buffers():
            if b.is_floating_point():
                dist.all_reduce(b, op=dist.ReduceOp.SUM)
                b.div_(ctx.world_size)
    if state.ema is not None:
        for be, b in zip(state.ema.buffers(), unwrap(state.g).buffers(), strict=True):
            be.copy_(b)


RECAL_BATCHES, RECAL_BATCH = 20, 256


@torch.no_grad()
def recalibrate_batchnorm(g: nn.Module, labels: torch.Tensor | None, seed: int) -> None:
    """Recompute the BatchNorm running statistics of `g` for its own weights: the average over
    `RECAL_BATCHES` batches of fresh z (and labels drawn from `labels`, the training classes).

    The EMA generator averages G's weights but its buffers are copies of G's, measured on G's
    activations; recomputed for the EMA's weights they fit it (measured here: fid_ratio 1.50
    instead of 2.06 for the unconditional conv recipe). Seeded by `seed` on a private generator,
    so training's random stream is untouched and every rank computes the same statistics."""
    bns = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    device = next(g.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    momenta = [bn.momentum for bn in bns]
    was_training = g.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the batches below
    g.train()
    try:
        for _ in range(RECAL_BATCHES):
            z = torch.randn(RECAL_BATCH, g.z_dim, generator=gen).to(device)
            if getattr(g, "n_classes", 0):
                y = labels[torch.randint(labels.shape[0], (RECAL_BATCH,), generator=gen)].to(device)
                g(z, y)
            else:
                g(z)
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        g.train(was_training)


def sampling_generator(state: GanState) -> nn.Module:
    """The generator to sample from: EMA when enabled, else G."""
    return state.ema if state.ema is not None else unwrap(state.g)


@torch.no_grad()
def sample(g: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """G(z[, y]) in eval mode (BatchNorm running statistics); G's mode is restored."""
    was_training = g.training
    g.eval()
    try:
        return g(z) if y is None else g(z, y)
    finally:
        g.train(was_training)


def rng_state(ctx: Context) -> dict[str, torch.Tensor]:
    """This rank's RNG state (CPU, and its CUDA device when it has one)."""
    out = {"cpu": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(ctx.device)
    return out


def state_dict(state: GanState) -> dict[str, Any]:
    """The global (rank-independent) part of a `GanState` as plain tensors and numbers."""
    return {
        "g": unwrap(state.g).state_dict(),
        "d": unwrap(state.d).state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else {},
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "fixed_noise": state.fixed_noise.cpu(),
        "fixed_labels": state.fixed_labels.cpu() if state.fixed_labels is not None else None,
        "epoch": state.epoch,
        "step": state.step,
        "history": state.history,
    }


def load_state_dict(state: GanState, sd: dict[str, Any], ctx: Context) -> None:
    """Restore a `GanState` in place; every rank loads the same global state and its own RNG
    (`sd["rng"]`, when the checkpoint holds one for this rank)."""
    unwrap(state.g).load_state_dict(sd["g"])
    unwrap(state.d).load_state_dict(sd["d"])
    if state.ema is not None:
        if not sd["ema"]:
            raise GanModelError("checkpoint has no EMA weights but train.ema_decay > 0")
        state.ema.load_state_dict(sd["ema"])
    state.opt_g.load_state_dict(sd["opt_g"])
    state.opt_d.load_state_dict(sd["opt_d"])
    state.fixed_noise = sd["fixed_noise"].to(ctx.device)
    if sd.get("fixed_labels") is not None:
        state.fixed_labels = sd["fixed_labels"].to(ctx.device)
    state.epoch, state.step = int(sd["epoch"]), int(sd["step"])
    state.history = list(sd.get("history", []))
    rng = sd.get("rng")
    if rng:
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and ctx.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], ctx.device)
