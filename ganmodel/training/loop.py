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
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ganmodel.augment import DiffAugment, take
from ganmodel.config import TrainParams
from ganmodel.data.prepared import to_unit_range
from ganmodel.errors import GanModelError
from ganmodel.losses import GRADIENT_PENALTY, LOSSES, GANLoss, gradient_penalty, r1_penalty
from ganmodel.networks import check_shape
from ganmodel.tracking.tracker import NullTracker, Tracker
from ganmodel.training.batches import BatchSource, MemoryBatches
from ganmodel.training.precision import native_bf16, resolve_precision
from ganmodel.training.sampling import describe, image_weights, resolve_class_sampling
from ganmodel.training.state import (
    GRID_COLUMNS,
    Context,
    GanState,
    build_state,
    ema_decay_at,
    load_state_dict,
    recalibrate_batchnorm,
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


Params = list[torch.Tensor] | None  # one rank's slice of the augmentation parameters


@dataclass(frozen=True)
class StepSpec:
    """What one training step does besides the adversarial loss (fixed for a run)."""

    loss: GANLoss
    gp_weight: float = 0.0  # WGAN-GP
    r1_gamma: float = 0.0  # R1 on reals, weighed gamma / 2
    augment: DiffAugment | None = None
    autocast: bool = False  # bf16


def step_spec(cfg: TrainParams, precision: str | None = None, resolution: int = 28) -> StepSpec:
    """The step of `cfg` on images `resolution` pixels wide; `precision` is `cfg.precision`
    resolved for the device (`fp32`/`bf16`)."""
    return StepSpec(LOSSES[cfg.loss], GRADIENT_PENALTY.get(cfg.loss, 0.0), cfg.r1_gamma,
                    DiffAugment(cfg.augment, resolution) if cfg.augment else None,
                    (precision or cfg.precision) == "bf16")


def _critic(d: nn.Module, y: torch.Tensor | None, aug: DiffAugment | None,
            params: Params) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> D(augment(x), y): what D sees, as one function (for the penalties' gradients)."""
    def f(x: torch.Tensor) -> torch.Tensor:
        x = aug(x, params) if aug is not None else x
        return d(x) if y is None else d(x, y)
    return f


def d_step(state: GanState, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None, spec: StepSpec,
           aug_real: Params = None, aug_fake: Params = None) -> torch.Tensor:
    """One D update on this rank's real and (detached) fake slice; returns the detached loss.

    One D forward over real+fake: DDP allows one forward per backward, and one larger matmul is
    faster than two. D has no BatchNorm in any family, so the batch composition cannot change it."""
    d = state.d
    fake = fake.detach()
    with torch.autocast(real.device.type, dtype=torch.bfloat16, enabled=spec.autocast):
        if spec.augment is not None:
            x = torch.cat([spec.augment(real, aug_real), spec.augment(fake, aug_fake)])
        else:
            x = torch.cat([real, fake])
        logits = (d(x) if y is None else d(x, torch.cat([y, y]))).float()
        real_logits, fake_logits = logits.split([real.shape[0], fake.shape[0]])
        d_loss = spec.loss.d_loss(real_logits, fake_logits)
    # Penalties go through the unwrapped D (DDP does not support double backward); their
    # gradients add to the same parameters before the one backward, so DDP still averages them.
    if spec.gp_weight:
        crit = _critic(unwrap(d), y, None, None)
        d_loss = d_loss + spec.gp_weight * gradient_penalty(crit, real, fake.float())
    if spec.r1_gamma:
        crit = _critic(unwrap(d), y, spec.augment, aug_real)
        d_loss = d_loss + 0.5 * spec.r1_gamma * r1_penalty(crit, real)
    state.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    state.opt_d.step()
    return d_loss.detach()


def g_step(state: GanState, fake: torch.Tensor, y: torch.Tensor | None, spec: StepSpec,
           aug_fake: Params = None) -> torch.Tensor:
    """One G update through `fake` (which carries G's graph); returns the detached loss.

    Through the *unwrapped* D with its parameters frozen: no D gradients are computed and no D
    all-reduce is triggered by G's backward."""
    d_raw = unwrap(state.d)
    d_raw.requires_grad_(False)
    try:
        with torch.autocast(fake.device.type, dtype=torch.bfloat16, enabled=spec.autocast):
            g_loss = spec.loss.g_loss(_critic(d_raw, y, spec.augment, aug_fake)(fake).float())
        state.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        state.opt_g.step()
    finally:
        d_raw.requires_grad_(True)
    return g_loss.detach()


def train_step(
    state: GanState,
    real: torch.Tensor,
    z: torch.Tensor,
    loss: GANLoss,
    gp_weight: float = 0.0,
    autocast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One D step then one G step on this rank's slice, unconditional and without augmentation
    (the seed's order: D on real and detached fake, then G through the same fake)."""
    check_shape(real, unwrap(state.g).image_shape, "train_step real batch")
    spec = StepSpec(loss, gp_weight, autocast=autocast)
    with torch.autocast(real.device.type, dtype=torch.bfloat16, enabled=autocast):
        fake = state.g(z)
    return d_step(state, real, fake, None, spec), g_step(state, fake, None, spec)


def steps_per_epoch(cfg: TrainParams, n_images: int) -> int:
    """Full global batches per epoch (drop_last: every rank needs the same number of steps)."""
    steps = n_images // cfg.batch_size
    if steps == 0:
        raise ValueError(
            f"train.batch_size: {cfg.batch_size} exceeds the {n_images} training images"
        )
    return min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB (what `train.data_loading` bounds)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _max_across_ranks(value: float, ctx: Context) -> float:
    if ctx.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _mean_across_ranks(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.world_size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= ctx.world_size
    return values


def train(
    cfg: TrainParams,
    images: torch.Tensor | BatchSource,
    ctx: Context,
    tracker: Tracker | None = None,
    report: ReportFn | None = None,
    resume: dict[str, Any] | None = None,
    evaluate: EvalFn | None = None,
    log: Callable[[str], None] = print,
    labels: torch.Tensor | None = None,
    n_classes: int = 0,
) -> GanState:
    """Train a GAN for `cfg.epochs` epochs on uint8 images [N, C, H, W], or on a `BatchSource`.

    A tensor is the full training set: it is moved to `ctx.device` once (`MemoryBatches`: no
    DataLoader, no per-step host-to-device copies) and each rank reads its slice of every global
    batch. A `BatchSource` streams instead (`ganmodel.training.batches`). The nets are built for the
    source's image shape. A conditional run (`cfg.conditional`) needs labels (`labels` [N] with a
    tensor; a source carries its own) and `n_classes`: G is asked for the classes of the real batch.
    """
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"training images: expected shape [N, C, H, W], got {list(images.shape)}")
        if cfg.conditional and (labels is None or labels.shape != (images.shape[0],)):
            raise GanModelError("train.conditional: the training split has no labels for its images")
        labels = labels if cfg.conditional else None
        sampling = resolve_class_sampling(cfg.class_sampling, labels, cfg.conditional)
        weights = image_weights(labels, sampling) if labels is not None else None
        source: BatchSource = MemoryBatches(images, labels, cfg.batch_size, ctx.rank, ctx.world_size,
                                            ctx.device, weights)
    else:
        source = images
        sampling = resolve_class_sampling(cfg.class_sampling, source.labels, cfg.conditional)
        if sampling != "data":  # a stream reads each row once per epoch: it cannot re-weigh them
            if cfg.class_sampling != "auto":
                raise GanModelError(f"train.class_sampling: {sampling} needs train.data_loading: memory; "
                                    "a streamed split is read in order, once per epoch")
            sampling = "data"
    image_shape = tuple(source.image_shape)
    tracker = tracker or NullTracker()
    ys = source.labels if cfg.conditional else None  # the class prior of BatchNorm recalibration
    state = build_state(cfg, ctx, n_classes, image_shape)
    if resume is not None:
        load_state_dict(state, resume, ctx)
        log(f"resumed from epoch {state.epoch} (step {state.step})")
    precision = resolve_precision(cfg.precision, ctx.device, ctx.world_size)
    if cfg.precision == "bf16" and not native_bf16(ctx.device):
        log(f"warning: train.precision bf16 is emulated on this {ctx.device.type} (no native bf16): "
            "expect it to be several times slower than fp32; train.precision: auto picks fp32 here")
    tracker.set_tags({"precision.resolved": precision, "class_sampling.resolved": sampling})
    if cfg.conditional and ctx.is_main:
        log(describe(source.labels, sampling))
    spec = step_spec(cfg, precision, image_shape[-1])
    aug = spec.augment
    b_local = cfg.batch_size // ctx.world_size
    lo, hi = ctx.rank * b_local, (ctx.rank + 1) * b_local
    n_steps = steps_per_epoch(cfg, len(source))
    epoch_times: list[float] = []

    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        gen = epoch_generator(cfg.seed, epoch, ctx.device)
        batches = source.epoch(epoch, gen, n_steps)
        # D and G losses summed over their own updates: with d_steps > 1, G updates on every
        # d_steps-th step only, and its mean is over those updates alone.
        d_sum = torch.zeros((), device=ctx.device)
        g_sum = torch.zeros((), device=ctx.device)
        g_updates = 0
        unwrap(state.g).train()
        unwrap(state.d).train()
        i = -1
        for i, (x, y_real) in enumerate(batches):
            # Every draw is for the global batch from the shared stream, then sliced: N ranks
            # see exactly what one rank at the global batch would.
            z = torch.randn(cfg.batch_size, cfg.z_dim, generator=gen, device=ctx.device)[lo:hi]
            check_shape(x, image_shape, "training batch")
            if x.shape[0] != b_local:  # DDP: every rank must step on equal slices
                raise GanModelError(f"train: a batch of {x.shape[0]} images, expected {b_local} per rank")
            real = to_unit_range(x)
            y = y_real.long() if cfg.conditional else None
            p_real = p_fake = p_g = None
            if aug is not None:
                p_real, p_fake, p_g = (take(aug.sample(cfg.batch_size, gen, ctx.device), lo, hi)
                                       for _ in range(3))
            g_turn = (i + 1) % cfg.d_steps == 0  # one G update per d_steps D updates
            with torch.set_grad_enabled(g_turn), torch.autocast(
                    ctx.device.type, dtype=torch.bfloat16, enabled=spec.autocast):
                fake = state.g(z) if y is None else state.g(z, y)
            d_sum += d_step(state, real, fake, y, spec, p_real, p_fake)
            if g_turn:
                g_sum += g_step(state, fake, y, spec, p_g)
                g_updates += 1
                if state.ema is not None:
                    update_ema(state.ema, state.g, ema_decay_at(cfg, state.step))
            state.step += 1
        if i + 1 != n_steps:
            raise GanModelError(f"train: the data source gave {i + 1} of the epoch's {n_steps} batches")
        sync_buffers(state, ctx)
        # An epoch shorter than d_steps has no G update: its g_loss is NaN, not a fake 0.
        g_mean = g_sum / g_updates if g_updates else torch.full((), float("nan"), device=ctx.device)
        means = _mean_across_ranks(torch.stack([d_sum / n_steps, g_mean]), ctx).tolist()
        peak_rss = _max_across_ranks(peak_rss_mb(), ctx)
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
            "worker_peak_rss_mb": peak_rss,
        }
        state.history.append({"epoch": state.epoch, **metrics})
        # Decided from the config alone, so every rank agrees; only rank 0 has `evaluate`.
        eval_due = bool(cfg.eval_every) and (state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs)
        if state.ema is not None and (eval_due or state.epoch == cfg.epochs):
            # What is evaluated, and what ships, samples with statistics of its own weights. Every
            # rank recalibrates, identically (a private seeded stream), so the EMA stays the same on
            # all ranks and in the checkpoint; the next step's update_ema copies G's buffers back in.
            recalibrate_batchnorm(state.ema, ys, cfg.seed * 1_000_003 + 7 * state.epoch)
        if ctx.is_main:
            gen_model = sampling_generator(state)
            if eval_due and evaluate is not None:
                t_eval = time.perf_counter()
                metrics.update(evaluate(gen_model))
                metrics["eval_time_s"] = time.perf_counter() - t_eval
                state.history[-1].update(metrics)
            tracker.log_metrics(metrics, step=state.epoch)
            grid = sample(gen_model, state.fixed_noise, state.fixed_labels)
            # A conditional model's fixed samples are GRID_COLUMNS per class: one row per class.
            tracker.log_image(grid, f"samples/epoch_{state.epoch:04d}.png",
                              nrow=GRID_COLUMNS if state.fixed_labels is not None else None)
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
