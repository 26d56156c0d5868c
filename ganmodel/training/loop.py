"""The GAN training loop. It knows nothing of Ray or MLflow: it takes a `Context` (rank, world
size, device), a `Tracker`, and a `report` callback that the caller (Ray adapter or local runner)
turns into checkpoints.

Determinism by construction: the data order and the noise of every *global* step are drawn from a
generator seeded by (seed, epoch), and each rank takes its slice of the global batch. With DDP's
gradient mean this makes N workers at batch B/N follow the same trajectory as one worker at B,
and makes a resume from an epoch checkpoint continue exactly where the run stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ganmodel.config import TrainParams
from ganmodel.data.prepared import to_unit_range
from ganmodel.losses import GRADIENT_PENALTY, LOSSES, GANLoss, gradient_penalty
from ganmodel.networks import IMAGE_SHAPE, check_shape
from ganmodel.tracking.tracker import NullTracker, Tracker
from ganmodel.training.state import (
    Context,
    GanState,
    build_state,
    load_state_dict,
    sample,
    sampling_generator,
    sync_buffers,
    unwrap,
    update_ema,
)

# report(epoch, metrics, state_or_None): every rank calls it at the end of every epoch (Ray's
# report is a barrier); `checkpoint` is True on epochs where a checkpoint is due.
ReportFn = Callable[[int, dict[str, float], "GanState", bool], None]
EvalFn = Callable[[nn.Module], dict[str, float]]


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The random stream of one epoch, shared by all ranks (data order, then per-step noise)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def train_step(
    state: GanState,
    real: torch.Tensor,
    z: torch.Tensor,
    loss: GANLoss,
    gp_weight: float = 0.0,
    autocast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One D step then one G step on this rank's slice (the seed's order: D on real and
    detached fake, then G through the same fake). Returns (d_loss, g_loss), detached."""
    check_shape(real, IMAGE_SHAPE, "train_step real batch")
    g, d = state.g, state.d
    dev = real.device.type
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
        fake = g(z)
        # One D forward over real+fake: DDP allows one forward per backward, and one larger
        # matmul is faster than two. D has no BatchNorm in the seed; for BN nets the batch
        # statistics then cover real and fake together (a deliberate, documented choice).
        logits = d(torch.cat([real, fake.detach()])).float()
        real_logits, fake_logits = logits.split([real.shape[0], fake.shape[0]])
        d_loss = loss.d_loss(real_logits, fake_logits)
    if gp_weight:
        d_loss = d_loss + gp_weight * gradient_penalty(unwrap(d), real, fake.detach().float())
    state.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    state.opt_d.step()

    # G step through the *unwrapped* D with its parameters frozen: no D gradients are computed
    # and no D all-reduce is triggered by G's backward.
    d_raw = unwrap(d)
    d_raw.requires_grad_(False)
    try:
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
            g_loss = loss.g_loss(d_raw(fake).float())
        state.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        state.opt_g.step()
    finally:
        d_raw.requires_grad_(True)
    return d_loss.detach(), g_loss.detach()


def steps_per_epoch(cfg: TrainParams, n_images: int) -> int:
    """Full global batches per epoch (drop_last: every rank needs the same number of steps)."""
    steps = n_images // cfg.batch_size
    if steps == 0:
        raise ValueError(
            f"train.batch_size: {cfg.batch_size} exceeds the {n_images} training images"
        )
    return min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps


def _mean_across_ranks(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.world_size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= ctx.world_size
    return values


def train(
    cfg: TrainParams,
    images: torch.Tensor,
    ctx: Context,
    tracker: Tracker | None = None,
    report: ReportFn | None = None,
    resume: dict[str, Any] | None = None,
    evaluate: EvalFn | None = None,
    log: Callable[[str], None] = print,
) -> GanState:
    """Train a GAN on uint8 images [N, 1, 28, 28] for `cfg.epochs` epochs.

    `images` is the full training set; it is moved to `ctx.device` once (no DataLoader, no
    per-step host-to-device copies) and each rank reads its slice of every global batch.
    """
    check_shape(images, IMAGE_SHAPE, "training images")
    tracker = tracker or NullTracker()
    data = images.to(ctx.device, non_blocking=True)
    state = build_state(cfg, ctx)
    if resume is not None:
        load_state_dict(state, resume, ctx)
        log(f"resumed from epoch {state.epoch} (step {state.step})")
    loss = LOSSES[cfg.loss]
    gp = GRADIENT_PENALTY.get(cfg.loss, 0.0)
    autocast = cfg.precision == "bf16"
    b_local = cfg.batch_size // ctx.world_size
    lo, hi = ctx.rank * b_local, (ctx.rank + 1) * b_local
    n_steps = steps_per_epoch(cfg, data.shape[0])
    epoch_times: list[float] = []

    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        gen = epoch_generator(cfg.seed, epoch, ctx.device)
        perm = torch.randperm(data.shape[0], generator=gen, device=ctx.device)
        sums = torch.zeros(2, device=ctx.device)
        unwrap(state.g).train()
        unwrap(state.d).train()
        for i in range(n_steps):
            z = torch.randn(cfg.batch_size, cfg.z_dim, generator=gen, device=ctx.device)[lo:hi]
            idx = perm[i * cfg.batch_size + lo : i * cfg.batch_size + hi]
            real = to_unit_range(data[idx])
            d_loss, g_loss = train_step(state, real, z, loss, gp, autocast)
            if state.ema is not None:
                update_ema(state.ema, state.g, cfg.ema_decay)
            sums += torch.stack([d_loss, g_loss])
            state.step += 1
        sync_buffers(state, ctx)
        means = _mean_across_ranks(sums / n_steps, ctx).tolist()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        dt = time.perf_counter() - t0
        epoch_times.append(dt)
        state.epoch = epoch + 1
        metrics = {
            "d_loss": means[0],
            "g_loss": means[1],
            "images_per_sec": n_steps * cfg.batch_size / dt,
            "epoch_time_s": dt,
        }
        state.history.append({"epoch": state.epoch, **metrics})
        if ctx.is_main:
            gen_model = sampling_generator(state)
            if evaluate is not None and cfg.eval_every and (
                state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs
            ):
                t_eval = time.perf_counter()
                metrics.update(evaluate(gen_model))
                metrics["eval_time_s"] = time.perf_counter() - t_eval
                state.history[-1].update(metrics)
            tracker.log_metrics(metrics, step=state.epoch)
            tracker.log_image(sample(gen_model, state.fixed_noise),
                              f"samples/epoch_{state.epoch:04d}.png")
            steady = epoch_times[1:] or epoch_times
            eta = (cfg.epochs - state.epoch) * sum(steady) / len(steady)
            extra = f" fid {metrics['fid']:.2f}" if "fid" in metrics else ""
            log(
                f"epoch {state.epoch}/{cfg.epochs}  d_loss {means[0]:.4f}  g_loss {means[1]:.4f}  "
                f"{metrics['images_per_sec']:.0f} img/s  eta {_fmt_eta(eta)}{extra}"
            )
        due = state.epoch % cfg.checkpoint_every == 0 or state.epoch == cfg.epochs
        if report is not None:
            report(state.epoch, metrics, state, due)
    return state


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(math.ceil(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s"
