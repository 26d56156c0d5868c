"""The Ray-free training loop: runs, is deterministic, resumes exactly from a checkpoint, EMA,
bf16 autocast, every loss with every architecture, and N ranks == one rank (real gloo DDP)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from ganmodel.artifacts import load_generator, save_generator
from ganmodel.errors import GanModelError
from ganmodel.networks import build_generator
from ganmodel.training.checkpoint import load_checkpoint, save_checkpoint
from ganmodel.training.job import outcome_from_state, run_local
from ganmodel.training.loop import train
from ganmodel.training.state import N_FIXED_NOISE, Context, GanState, state_dict, unwrap


class RecordingTracker:
    """Our `Tracker` protocol, recording calls (the loop's only view of MLflow)."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.images: list[tuple[str, tuple[int, ...]]] = []
        self.nrows: list[int | None] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_image(self, images: torch.Tensor, artifact_file: str, nrow: int | None = None) -> None:
        self.images.append((artifact_file, tuple(images.shape)))
        self.nrows.append(nrow)

    def log_file(self, path: Any, artifact_path: str | None = None) -> None:
        pass


def _quiet(_msg: str) -> None:
    pass


def _same_state_dict(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train(cfg, images, **kw) -> GanState:
    return train(cfg, images, Context(), log=_quiet, **kw)


def test_train_runs_and_reports_per_epoch(train_cfg, random_images) -> None:
    cfg = train_cfg(epochs=2, steps_per_epoch=3, batch_size=64)
    tracker = RecordingTracker()
    reports: list[tuple[int, bool, int]] = []

    def report(epoch: int, metrics: dict[str, float], state: GanState, due: bool) -> None:
        reports.append((epoch, due, state.step))

    lines: list[str] = []
    state = train(cfg, random_images, Context(), tracker, report, log=lines.append)
    assert (state.epoch, state.step) == (2, 6)
    assert [h["epoch"] for h in state.history] == [1, 2]
    for h in state.history:
        for key in ("d_loss", "g_loss", "images_per_sec", "epoch_time_s"):
            assert math.isfinite(h[key]), (key, h)
        assert h["d_loss"] > 0 and h["g_loss"] > 0  # BCE losses are positive
    assert reports == [(1, True, 3), (2, True, 6)]
    assert [step for step, _ in tracker.metrics] == [1, 2]
    assert tracker.metrics[0][1]["d_loss"] == state.history[0]["d_loss"]
    assert tracker.images == [("samples/epoch_0001.png", (N_FIXED_NOISE, 1, 28, 28)),
                              ("samples/epoch_0002.png", (N_FIXED_NOISE, 1, 28, 28))]
    assert tracker.nrows == [None, None]  # unconditional: a square grid
    assert len(lines) == 2 and lines[-1].startswith("epoch 2/2")
    # The weights moved.
    torch.manual_seed(cfg.seed)
    g0 = build_generator(cfg.arch, cfg.z_dim)
    assert not _same_state_dict(g0.state_dict(), unwrap(state.g).state_dict())


def test_checkpoint_every(train_cfg, random_images) -> None:
    cfg = train_cfg(epochs=3, steps_per_epoch=1, batch_size=32, checkpoint_every=2)
    dues: list[bool] = []
    _train(cfg, random_images, report=lambda e, m, s, due: dues.append(due))
    assert dues == [False, True, True]  # every 2nd epoch, and always the last


def test_full_passes_without_steps_per_epoch(train_cfg, random_images) -> None:
    cfg = train_cfg(epochs=1, steps_per_epoch=None, batch_size=200)
    state = _train(cfg, random_images)
    assert state.step == 512 // 200  # drop_last


def test_bad_inputs(train_cfg, random_images) -> None:
    with pytest.raises(ValueError, match="train.batch_size"):
        _train(train_cfg(batch_size=1024), random_images)
    with pytest.raises(ValueError, match="training images"):
        _train(train_cfg(), random_images[:, 0])


def test_deterministic_per_seed(train_cfg, random_images) -> None:
    cfg = train_cfg(epochs=2, steps_per_epoch=2, batch_size=32)
    a, b = _train(cfg, random_images), _train(cfg, random_images)
    assert _same_state_dict(unwrap(a.g).state_dict(), unwrap(b.g).state_dict())
    assert _same_state_dict(unwrap(a.d).state_dict(), unwrap(b.d).state_dict())
    assert a.history[-1]["d_loss"] == b.history[-1]["d_loss"]
    c = _train(train_cfg(epochs=2, steps_per_epoch=2, batch_size=32, seed=1), random_images)
    assert not _same_state_dict(unwrap(a.g).state_dict(), unwrap(c.g).state_dict())


def test_run_local(train_cfg, random_images) -> None:
    outcome = run_local(train_cfg(epochs=2, steps_per_epoch=2, batch_size=32), random_images)
    assert len(outcome.history) == 2 and outcome.fixed_noise.shape == (N_FIXED_NOISE, 100)
    assert outcome.steady_images_per_sec > 0 and outcome.wall_time_s > 0
    g = build_generator("mlp", 100)
    g.load_state_dict(outcome.generator)
    assert g(outcome.fixed_noise[:2]).shape == (2, 1, 28, 28)


LABELS = torch.arange(512) % 10  # classes for `random_images` (conditional runs)
# Everything the recipe can switch on at once: conditional nets, DiffAugment, R1, 2 D steps per G
# step, EMA with ramp-up, TTUR.
KITCHEN_SINK = dict(conditional=True, augment=("translation", "cutout", "color"), r1_gamma=1.0, d_steps=2,
                    ema_decay=0.9, ema_rampup=True, lr_g=1e-3, lr_d=4e-4, spectral_norm=True)


@pytest.mark.parametrize(
    "arch,loss,ema_decay,extra",
    [("mlp", "bce", 0.0, {}), ("mlp", "wgan_gp", 0.9, {}), ("dcgan", "hinge", 0.9, {}),
     ("conv", "hinge", 0.9, KITCHEN_SINK)],
)
def test_resume_from_checkpoint_is_exact(tmp_path: Path, train_cfg, random_images, arch: str, loss: str,
                                         ema_decay: float, extra: dict) -> None:
    """2 epochs straight == 1 epoch, checkpoint, new process state, resume for 1 more."""
    kw = dict(arch=arch, loss=loss, steps_per_epoch=2, batch_size=16, **{"ema_decay": ema_decay, **extra})
    lab = dict(labels=LABELS, n_classes=10) if extra.get("conditional") else {}
    full = _train(train_cfg(epochs=2, **kw), random_images, **lab)

    ckpt = tmp_path / "ckpt"

    def report(epoch: int, metrics: dict[str, float], state: GanState, due: bool) -> None:
        assert due
        save_checkpoint(state, Context(), ckpt)

    _train(train_cfg(epochs=1, **kw), random_images, report=report, **lab)
    assert sorted(p.name for p in ckpt.iterdir()) == ["rng_rank0.pt", "state.pt"]
    torch.manual_seed(12345)  # scramble the global RNG: the checkpoint must restore it
    sd = load_checkpoint(ckpt, Context())
    assert sd["epoch"] == 1 and sd["step"] == 2
    resumed = _train(train_cfg(epochs=2, **kw), random_images, resume=sd, **lab)

    assert (resumed.epoch, resumed.step) == (2, 4)
    assert _same_state_dict(unwrap(full.g).state_dict(), unwrap(resumed.g).state_dict())
    assert _same_state_dict(unwrap(full.d).state_dict(), unwrap(resumed.d).state_dict())
    if ema_decay:
        assert _same_state_dict(full.ema.state_dict(), resumed.ema.state_dict())
    assert [h["d_loss"] for h in full.history] == [h["d_loss"] for h in resumed.history]
    assert [h["g_loss"] for h in full.history] == [h["g_loss"] for h in resumed.history]
    assert torch.equal(full.fixed_noise, resumed.fixed_noise)
    # Optimiser moments too.
    fo, ro = full.opt_g.state_dict()["state"], resumed.opt_g.state_dict()["state"]
    assert fo.keys() == ro.keys()
    assert all(torch.equal(fo[k]["exp_avg_sq"], ro[k]["exp_avg_sq"]) for k in fo)


def test_resume_ema_from_checkpoint_without_ema(tmp_path: Path, train_cfg, random_images) -> None:
    ckpt = tmp_path / "ckpt"
    _train(train_cfg(epochs=1, steps_per_epoch=1, batch_size=32), random_images,
           report=lambda e, m, s, due: save_checkpoint(s, Context(), ckpt))
    with pytest.raises(GanModelError, match="no EMA weights"):
        _train(train_cfg(epochs=2, steps_per_epoch=1, batch_size=32, ema_decay=0.9), random_images,
               resume=load_checkpoint(ckpt, Context()))
    with pytest.raises(GanModelError, match="checkpoint state not found"):
        load_checkpoint(tmp_path / "empty", Context())


def test_ema(train_cfg, random_images) -> None:
    cfg = train_cfg(epochs=1, steps_per_epoch=1, batch_size=32, ema_decay=0.9)
    state = _train(cfg, random_images)
    torch.manual_seed(cfg.seed)
    g0 = build_generator(cfg.arch, cfg.z_dim).state_dict()  # the initial weights
    g1 = unwrap(state.g).state_dict()
    ema = state.ema.state_dict()
    assert not _same_state_dict(ema, g1)
    for k in ema:  # one update: ema = 0.9 * g0 + 0.1 * g1
        torch.testing.assert_close(ema[k], 0.9 * g0[k] + 0.1 * g1[k], rtol=1e-5, atol=1e-7)
    assert all(not p.requires_grad for p in state.ema.parameters())
    # The shipped generator is the EMA one (what run_local and run_ray return).
    outcome = outcome_from_state(state_dict(state), 1.0)
    assert _same_state_dict(outcome.generator, ema)
    assert not _same_state_dict(outcome.generator, g1)


def _conv_output_dtypes(cfg, images) -> tuple[GanState, set[torch.dtype]]:
    """Train, recording the dtype every Conv2d / ConvTranspose2d of G and D computed in."""
    seen: set[torch.dtype] = set()

    def hook(m: torch.nn.Module, _inputs: Any, out: Any) -> None:
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        return _train(cfg, images), seen
    finally:
        handle.remove()


def test_bf16_autocast_on_cpu(train_cfg, random_images) -> None:
    """bf16 is a precision, not another algorithm: the nets compute in bf16, the weights stay fp32,
    and the trajectory stays close to fp32's. An autocast that is off, or that corrupts the
    update, each fails here."""
    cfg = train_cfg(arch="dcgan", epochs=1, steps_per_epoch=4, batch_size=32, lr_g=1e-3, lr_d=1e-3)
    torch.manual_seed(cfg.seed)
    g0 = build_generator(cfg.arch, cfg.z_dim).state_dict()
    bf16, bf16_dtypes = _conv_output_dtypes(cfg.model_copy(update={"precision": "bf16"}), random_images)
    fp32, fp32_dtypes = _conv_output_dtypes(cfg, random_images)
    # (The epoch's sample grid runs outside autocast, so bf16 training records fp32 too.)
    assert torch.bfloat16 in bf16_dtypes and fp32_dtypes == {torch.float32}
    assert all(p.dtype == torch.float32 for p in unwrap(bf16.g).parameters())
    a, b = unwrap(bf16.g).state_dict(), unwrap(fp32.g).state_dict()
    keys = [k for k in g0 if g0[k].is_floating_point() and "running" not in k]
    moved = math.sqrt(sum(float((b[k] - g0[k]).norm()) ** 2 for k in keys))
    apart = math.sqrt(sum(float((a[k] - b[k]).norm()) ** 2 for k in keys))
    # Measured 0.27: Adam's first steps are nearly sign(gradient), so rounding flips the update of
    # weights whose gradient is near 0; a trajectory of its own would be apart by about `moved`.
    assert 0 < apart < 0.5 * moved, (apart, moved)
    assert bf16.history[-1]["d_loss"] == pytest.approx(fp32.history[-1]["d_loss"], rel=0.1)


def _expected_losses(loss: str, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """The D and G losses of logits, written out independently of `ganmodel.losses`."""
    import torch.nn.functional as F

    real, fake = real.double(), fake.double()
    if loss == "bce":  # Goodfellow et al. 2014, with the non-saturating G loss
        return float(F.softplus(-real).mean() + F.softplus(fake).mean()), float(F.softplus(-fake).mean())
    if loss == "hinge":
        return float(F.relu(1 - real).mean() + F.relu(1 + fake).mean()), float(-fake.mean())
    return float(fake.mean() - real.mean()), float(-fake.mean())  # WGAN, before the gradient penalty


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan_gp"])
def test_loss_variants(train_cfg, random_images, arch: str, loss: str) -> None:
    """The loss a run names is the loss it optimises: one step's logged losses equal the formulas
    on the discriminator's own logits of that step, and WGAN-GP adds a positive penalty."""
    cfg = train_cfg(arch=arch, loss=loss, epochs=1, steps_per_epoch=1, batch_size=16)
    logits: list[torch.Tensor] = []
    import ganmodel.training.state as state_mod

    real_build = state_mod.build_discriminator

    def build(*a, **kw):  # D of this run, with its outputs recorded
        d = real_build(*a, **kw)
        d.register_forward_hook(lambda _m, _i, out: logits.append(out.detach()))
        return d

    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(state_mod, "build_discriminator", build)
        state = _train(cfg, random_images)
    # D's forwards in the step: [real; fake] in the D step, (the penalty's,) then fake in the G step,
    # which sees D after its update.
    both, g_fake = logits[0], logits[-1]
    d_want, _ = _expected_losses(loss, both[:16], both[16:])
    _, g_want = _expected_losses(loss, both[:16], g_fake)
    h = state.history[-1]
    assert h["g_loss"] == pytest.approx(g_want, rel=1e-5, abs=1e-6)
    if loss == "wgan_gp":
        assert len(logits) == 3 and h["d_loss"] > d_want + 1e-6  # + 10 x a gradient penalty > 0
    else:
        assert len(logits) == 2 and h["d_loss"] == pytest.approx(d_want, rel=1e-5, abs=1e-6)


def test_generator_file_round_trip(tmp_path: Path, train_cfg, random_images) -> None:
    outcome = run_local(train_cfg(arch="dcgan", epochs=1, steps_per_epoch=1, batch_size=16, z_dim=16),
                        random_images)
    path = tmp_path / "generator.pt"
    save_generator(outcome.generator, {"arch": "dcgan", "z_dim": 16}, path)
    g, _ = load_generator(path)
    assert not g.training
    assert _same_state_dict(g.state_dict(), outcome.generator)
    save_generator(outcome.generator, {"arch": "vit", "z_dim": 16}, path)
    with pytest.raises(GanModelError, match="unknown generator architecture"):
        load_generator(path)
    path.write_bytes(b"junk")
    with pytest.raises(GanModelError, match="not a ganmodel generator file"):
        load_generator(path)
    with pytest.raises(GanModelError, match="not found"):
        load_generator(tmp_path / "missing.pt")


# --- two ranks with real gloo DDP follow the one-rank trajectory --------------------------------


def _ddp_worker(rank: int, world: int, init_file: str, cfg_dict: dict, images: torch.Tensor,
                out: str) -> None:
    import torch.distributed as dist

    from ganmodel.config import TrainParams

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = TrainParams(**cfg_dict)
        lab = dict(labels=LABELS, n_classes=10) if cfg.conditional else {}
        state = train(cfg, images, Context(rank, world), log=_quiet, **lab)
        if rank == 0:
            torch.save({"g": unwrap(state.g).state_dict(), "history": state.history}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)  # a stuck gloo rendezvous must not hang the suite
@pytest.mark.parametrize("extra", [{}, {**KITCHEN_SINK, "ema_decay": 0.0}], ids=["seed", "kitchen-sink"])
def test_two_ranks_match_one_rank(tmp_path: Path, train_cfg, random_images, extra: dict) -> None:
    """The loop's claim for nets without BatchNorm (the seed MLP): DDP at B/2 per rank == one
    rank at B, conditional, augmented and regularised too: labels, augmentation parameters and
    noise are drawn for the global batch and sliced. (BatchNorm nets such as dcgan differ by
    design: batch statistics are per rank.)"""
    cfg = train_cfg(arch="mlp", epochs=2, steps_per_epoch=2, batch_size=32, num_workers=2, **extra)
    out = tmp_path / "rank0.pt"
    args = (2, str(tmp_path / "init"), cfg.model_dump(), random_images, str(out))
    # fork, not spawn: no second torch import per rank (the workers use one intra-op thread,
    # which is what makes torch safe after fork, as in DataLoader workers).
    mp.start_processes(_ddp_worker, args=args, nprocs=2, join=True, start_method="fork")
    ddp = torch.load(out, weights_only=True)
    single = _train(cfg, random_images, **(dict(labels=LABELS, n_classes=10) if cfg.conditional else {}))
    ref = unwrap(single.g).state_dict()
    for k, v in ddp["g"].items():
        torch.testing.assert_close(v, ref[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    for h_ddp, h_one in zip(ddp["history"], single.history, strict=True):
        assert h_ddp["d_loss"] == pytest.approx(h_one["d_loss"], rel=1e-4)
        assert h_ddp["g_loss"] == pytest.approx(h_one["g_loss"], rel=1e-4)


def test_conditional_training_needs_labels_and_records_its_classes(train_cfg, random_images) -> None:
    cfg = train_cfg(arch="mlp", conditional=True, epochs=1, steps_per_epoch=2, batch_size=20)
    with pytest.raises(GanModelError, match="train.conditional"):
        _train(cfg, random_images)
    tracker = RecordingTracker()
    state = _train(cfg, random_images, labels=LABELS, n_classes=10, tracker=tracker)
    assert unwrap(state.g).n_classes == 10
    assert state.fixed_labels.tolist() == [c for c in range(10) for _ in range(8)]  # a row per class
    # ... and the per-epoch grid in MLflow is laid out that way: 8 per row, one row per class.
    assert tracker.images == [("samples/epoch_0001.png", (80, 1, 28, 28))] and tracker.nrows == [8]
    assert state.fixed_noise.shape == (80, 100)
    assert state_dict(state)["fixed_labels"].tolist() == state.fixed_labels.tolist()


def test_d_steps_update_g_once_per_d_steps(train_cfg, random_images) -> None:
    """The loop's own optimisers: with d_steps=3, six steps are six D updates and two G updates
    (Adam counts its steps per parameter), and the logged g_loss is the mean of those two G
    losses, not of stale values and zeros."""
    import ganmodel.training.loop as loop

    cfg = train_cfg(epochs=1, steps_per_epoch=6, batch_size=16, d_steps=3)
    g_losses: list[float] = []
    real_g_step = loop.g_step

    def record(*a, **kw):
        out = real_g_step(*a, **kw)
        g_losses.append(float(out))
        return out

    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(loop, "g_step", record)
        state = _train(cfg, random_images)
    assert state.step == 6
    steps = {name: {int(s["step"]) for s in opt.state.values()}
             for name, opt in (("d", state.opt_d), ("g", state.opt_g))}
    assert steps == {"d": {6}, "g": {2}}
    assert len(g_losses) == 2
    assert state.history[-1]["g_loss"] == pytest.approx(sum(g_losses) / 2, rel=1e-6)


def test_ema_rampup_follows_the_step(train_cfg) -> None:
    from ganmodel.training.state import ema_decay_at

    cfg = train_cfg(ema_decay=0.999, ema_rampup=True)
    assert [round(ema_decay_at(cfg, t), 4) for t in (0, 10, 1000, 100000)] == [0.1, 0.55, 0.9911, 0.999]
    assert ema_decay_at(train_cfg(ema_decay=0.999), 0) == 0.999


@pytest.mark.parametrize("loss", ["hinge", "wgan_gp", "bce"])
def test_conditional_nets_train_with_every_loss_in_bf16_with_ema(train_cfg, random_images, loss) -> None:
    """Hinge, WGAN-GP (its penalty through the conditional critic), SN, EMA and bf16 all work with
    conditional nets: finite losses, and the EMA generator is asked for classes."""
    cfg = train_cfg(arch="conv", conditional=True, loss=loss, spectral_norm=loss != "wgan_gp", ema_decay=0.9,
                    ema_rampup=True, precision="bf16", epochs=1, steps_per_epoch=2, batch_size=16, z_dim=16)
    state = _train(cfg, random_images, labels=LABELS, n_classes=10)
    assert all(math.isfinite(h[k]) for h in state.history for k in ("d_loss", "g_loss"))
    z = torch.randn(1, 16).repeat(10, 1)
    out = state.ema.eval()(z, torch.arange(10))
    assert out.shape == (10, 1, 28, 28) and torch.isfinite(out).all()
    # The class reaches the image: one z asked for ten classes gives ten different images.
    assert len({tuple(o.flatten().tolist()) for o in out}) == 10
    # Every loss moved both nets: neither optimiser is idle under conditioning.
    assert {int(s["step"]) for s in state.opt_d.state.values()} == {2}
    assert {int(s["step"]) for s in state.opt_g.state.values()} == {2}


def test_batchnorm_recalibration_fits_the_statistics_to_the_weights() -> None:
    """`recalibrate_batchnorm` gives an EMA generator the BatchNorm statistics of its own weights:
    stale statistics (G's, from other weights) make eval-mode samples differ from what the same
    weights give with batch statistics; recalibrated, eval and batch outputs agree. It is seeded,
    leaves the global RNG, the momenta and the mode alone, and draws labels from the given pool."""
    from ganmodel.training.state import recalibrate_batchnorm

    torch.manual_seed(0)
    g = build_generator("dcgan", 16, n_classes=10)
    with torch.no_grad():  # weights moved away from those the running statistics were measured on
        for p in g.parameters():
            p.mul_(1.5).add_(0.05)
    z, y = torch.randn(512, 16), torch.arange(512) % 10

    def gap() -> float:
        g.eval()
        ev = g(z, y)
        g.train()
        with torch.no_grad():
            return float((ev - g(z, y)).abs().mean())

    with torch.no_grad():
        before = gap()
        rng = torch.get_rng_state()
        momenta = [m.momentum for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        g.eval()
        pool = torch.arange(100) % 10  # the training classes
        recalibrate_batchnorm(g, pool, seed=5)
        stats = {k: v.clone() for k, v in g.state_dict().items() if "running" in k}
        assert torch.equal(torch.get_rng_state(), rng) and not g.training
        assert [m.momentum for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)] == momenta
        after = gap()
        recalibrate_batchnorm(g, pool, seed=5)
        assert all(torch.equal(v, g.state_dict()[k]) for k, v in stats.items())  # seeded
        recalibrate_batchnorm(g, torch.full((64,), 7), seed=5)  # another class pool, other statistics
        assert not all(torch.equal(v, g.state_dict()[k]) for k, v in stats.items())
    assert after < 0.25 * before, (after, before)


def test_precision_auto_is_bf16_only_where_it_is_native(train_cfg, random_images) -> None:
    from ganmodel.training.precision import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    want = "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    assert native_bf16(cpu) == (want == "bf16")
    assert resolve_precision("auto", cpu) == want
    assert (resolve_precision("fp32", cpu), resolve_precision("bf16", cpu)) == ("fp32", "bf16")
    with pytest.raises(ValueError, match="train.precision"):
        resolve_precision("fp16", cpu)
    tags: dict[str, str] = {}
    tracker = RecordingTracker()
    tracker.set_tags = tags.update  # type: ignore[method-assign]
    _train(train_cfg(epochs=1, steps_per_epoch=1, batch_size=16, precision="auto"), random_images,
           tracker=tracker)
    # The run records what it trained in, and how it drew its classes (unconditional: the data's order).
    assert tags == {"precision.resolved": want, "class_sampling.resolved": "data"}
