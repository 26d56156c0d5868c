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
from ganmodel.data.prepared import to_unit_range
from ganmodel.errors import GanModelError
from ganmodel.losses import LOSSES
from ganmodel.networks import build_generator
from ganmodel.training.checkpoint import load_checkpoint, save_checkpoint
from ganmodel.training.job import outcome_from_state, run_local
from ganmodel.training.loop import train
from ganmodel.training.state import N_FIXED_NOISE, Context, GanState, build_state, state_dict, unwrap


class RecordingTracker:
    """Our `Tracker` protocol, recording calls (the loop's only view of MLflow)."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.images: list[tuple[str, tuple[int, ...]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_image(self, images: torch.Tensor, artifact_file: str) -> None:
        self.images.append((artifact_file, tuple(images.shape)))

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


def test_bf16_autocast_on_cpu(train_cfg, random_images) -> None:
    state = _train(train_cfg(epochs=1, steps_per_epoch=2, batch_size=32, precision="bf16"), random_images)
    h = state.history[-1]
    assert math.isfinite(h["d_loss"]) and math.isfinite(h["g_loss"])
    assert all(p.dtype == torch.float32 for p in unwrap(state.g).parameters())
    fp32 = _train(train_cfg(epochs=1, steps_per_epoch=2, batch_size=32), random_images)
    assert not _same_state_dict(unwrap(state.g).state_dict(), unwrap(fp32.g).state_dict())


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("loss", ["hinge", "wgan_gp"])
def test_loss_variants(train_cfg, random_images, arch: str, loss: str) -> None:
    outcome = run_local(train_cfg(arch=arch, loss=loss, epochs=1, steps_per_epoch=2, batch_size=16),
                        random_images)
    h = outcome.history[-1]
    assert math.isfinite(h["d_loss"]) and math.isfinite(h["g_loss"])
    g = build_generator(arch, 100)
    g.load_state_dict(outcome.generator)
    assert g.eval()(outcome.fixed_noise[:3]).shape == (3, 1, 28, 28)


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
    state = _train(cfg, random_images, labels=LABELS, n_classes=10)
    assert unwrap(state.g).n_classes == 10
    assert state.fixed_labels.tolist() == [c for c in range(10) for _ in range(8)]  # a row per class
    assert state.fixed_noise.shape == (80, 100)
    assert state_dict(state)["fixed_labels"].tolist() == state.fixed_labels.tolist()


def test_d_steps_update_g_once_per_d_steps(train_cfg, random_images) -> None:
    cfg = train_cfg(epochs=1, steps_per_epoch=6, batch_size=16, d_steps=3)
    state = build_state(cfg, Context())
    counts = {"g": 0, "d": 0}
    state.opt_g.register_step_post_hook(lambda *_: counts.__setitem__("g", counts["g"] + 1))
    state.opt_d.register_step_post_hook(lambda *_: counts.__setitem__("d", counts["d"] + 1))
    from ganmodel.training.loop import StepSpec, d_step, g_step

    spec = StepSpec(LOSSES["bce"])
    for i in range(6):
        real = to_unit_range(random_images[i * 16:(i + 1) * 16])
        fake = state.g(torch.randn(16, 100))
        d_step(state, real, fake, None, spec)
        if (i + 1) % cfg.d_steps == 0:
            g_step(state, fake, None, spec)
    assert counts == {"d": 6, "g": 2}
    out = _train(cfg, random_images)  # the loop itself: step counts D updates
    assert out.step == 6


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
    out = state.ema(torch.randn(10, 16), torch.arange(10))
    assert out.shape == (10, 1, 28, 28) and torch.isfinite(out).all()
