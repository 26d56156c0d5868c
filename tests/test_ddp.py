"""DDP correctness of the GAN loop without Ray: two real CPU processes over gloo
(`torch.multiprocessing` spawn, `init_process_group("gloo", "file://...")`), two models, two
optimisers.

(a) After 6 steps every rank holds bit-identical G, D and EMA parameters, buffers (BatchNorm running
    statistics, averaged across ranks at each epoch end) and Adam moments; dcgan (BatchNorm),
    mlp, and mlp_leaky with spectral norm (BatchNorm in G, Dropout and power-iteration buffers in D).
(b) Gradient parity: 2 workers at b/2 give the same D and G gradients as 1 worker at b on the same
    weights, data and noise (captured in an optimiser step pre-hook, i.e. after DDP's all-reduce),
    and after k steps the 2-worker weights match the 1-worker weights (trajectory equivalence).
    MLP only: with BatchNorm the batch statistics are per rank (b/2 samples), so a BN net's
    gradients legitimately differ from one worker's at b. (wgan_gp is not covered either: its
    interpolation weights come from each rank's own RNG stream, which one worker does not draw.)

One spawn runs every case (process start and imports dominate the cost); tests read its results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from ganmodel.config import TrainParams
from ganmodel.data.prepared import to_unit_range
from ganmodel.losses import LOSSES
from ganmodel.training.loop import train, train_step
from ganmodel.training.state import Context, GanState, build_state, unwrap

pytestmark = pytest.mark.timeout(240)  # a stuck gloo rendezvous must not hang the suite

WORLD = 2
BATCH = 32
GRAD_STEPS = 3
IDENTITY_CASES = {
    # BatchNorm in G, EMA on: buffers must be synced, EMA must follow identical weights.
    "dcgan": dict(arch="dcgan", loss="bce", ema_decay=0.9),
    # The default recipe's family, conditional, augmented, R1 and 2 D steps per G step; an
    # in-training evaluation every epoch (on rank 0 only, as under Ray) recalibrates the EMA's
    # BatchNorm statistics, which every rank must do alike.
    "conv": dict(arch="conv", loss="hinge", ema_decay=0.9, ema_rampup=True, spectral_norm=True,
                 augment=("translation", "cutout"), r1_gamma=1.0, d_steps=2, conditional=True,
                 eval_every=1),
    "mlp": dict(arch="mlp", loss="hinge", ema_decay=0.5),
    # The default family: BatchNorm in G, Dropout in D; spectral norm adds D buffers (u, v).
    "mlp_leaky": dict(arch="mlp_leaky", loss="bce", ema_decay=0.9, spectral_norm=True),
}
PARITY_LOSSES = ("bce", "hinge")
# Hinge's piecewise-linear loss leaves some gradients at (nearly) exactly zero; where rounding
# gives them different signs in the two set-ups, Adam moves those weights by about lr * sign(g) and
# a few elements drift apart by ~1e-5 within 3 steps. Trajectory equivalence is tested for the
# smooth BCE of the seed.
TRAJECTORY_LOSSES = ("bce",)
# Gradients of 1 worker at b vs the all-reduced mean of 2 workers at b/2: same maths, different
# float summation order.
GRAD_TOL = dict(rtol=1e-5, atol=1e-6)
# Adam divides by sqrt(v): after a few steps the tiny summation differences show more in weights.
WEIGHT_TOL = dict(rtol=1e-4, atol=1e-5)


def _quiet(_msg: str) -> None:
    pass


def _cfg(**kw: Any) -> TrainParams:
    base = dict(preset="custom", arch="mlp", loss="bce", epochs=2, steps_per_epoch=3, batch_size=BATCH,
                num_workers=WORLD, lr_g=2e-4, lr_d=2e-4, z_dim=100, seed=0)
    base.update(kw)
    return TrainParams(**base)


def _snapshot(state: GanState) -> dict[str, Any]:
    """Every tensor a rank holds: parameters and buffers of G, D, EMA, and both Adam states."""
    out: dict[str, Any] = {
        "g": unwrap(state.g).state_dict(),
        "d": unwrap(state.d).state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else {},
    }
    for name, opt in (("opt_g", state.opt_g), ("opt_d", state.opt_d)):
        out[name] = {f"{i}.{k}": v for i, s in opt.state_dict()["state"].items() for k, v in s.items()
                     if torch.is_tensor(v)}
    return {k: {n: t.detach().clone() for n, t in v.items()} for k, v in out.items()}


def capture_grads(state: GanState) -> dict[str, list[dict[str, torch.Tensor]]]:
    """Record the gradients each optimiser is about to apply, at every step. A step pre-hook sees
    them after backward (and so after DDP's all-reduce), whatever `train_step` does around it."""
    grads: dict[str, list[dict[str, torch.Tensor]]] = {"d": [], "g": []}

    def hook(kind: str, model: torch.nn.Module):
        def pre_step(_opt, _args, _kwargs) -> None:
            grads[kind].append({n: p.grad.detach().clone() for n, p in unwrap(model).named_parameters()
                                if p.grad is not None})
        return pre_step

    state.opt_d.register_step_pre_hook(hook("d", state.d))
    state.opt_g.register_step_pre_hook(hook("g", state.g))
    return grads


def run_steps(cfg: TrainParams, ctx: Context, batches: list[tuple[torch.Tensor, torch.Tensor]]):
    """`train_step` on this rank's slice of each global batch (the loop's slicing)."""
    state = build_state(cfg, ctx)
    grads = capture_grads(state)
    b = cfg.batch_size // ctx.world_size
    lo, hi = ctx.rank * b, (ctx.rank + 1) * b
    for real, z in batches:
        train_step(state, real[lo:hi], z[lo:hi], LOSSES[cfg.loss])
    return state, grads


def make_batches(images: torch.Tensor, n: int, z_dim: int = 100) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(99)
    perm = torch.randperm(images.shape[0], generator=gen)
    return [(to_unit_range(images[perm[i * BATCH:(i + 1) * BATCH]]), torch.randn(BATCH, z_dim, generator=gen))
            for i in range(n)]


def _worker(rank: int, world: int, init_file: str, images: torch.Tensor,
            batches: list[tuple[torch.Tensor, torch.Tensor]], out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ctx = Context(rank, world)
        results: dict[str, Any] = {"identity": {}, "parity": {}}
        for name, kw in IDENTITY_CASES.items():
            cfg = _cfg(**kw)
            epoch1: dict[str, Any] = {}

            def report(epoch: int, _m: Any, st: GanState, _due: bool, epoch1=epoch1) -> None:
                if epoch == 1:
                    epoch1.update(_snapshot(st)["ema"])

            labels = dict(labels=torch.arange(images.shape[0]) % 10, n_classes=10) if cfg.conditional else {}
            evaluate = (lambda _g: {"fid": 0.0}) if rank == 0 and cfg.eval_every else None
            state = train(cfg, images, ctx, log=_quiet, report=report, evaluate=evaluate, **labels)
            results["identity"][name] = {"step": state.step, **_snapshot(state), "ema_epoch1": epoch1,
                                         "n_classes": unwrap(state.g).n_classes}
        for loss in PARITY_LOSSES:
            state, grads = run_steps(_cfg(loss=loss), ctx, batches)
            results["parity"][loss] = {"grads": grads, **_snapshot(state)}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory, random_images: torch.Tensor) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ddp")
    batches = make_batches(random_images, GRAD_STEPS)
    mp.start_processes(_worker, args=(WORLD, str(out / "init"), random_images, batches, str(out)),
                       nprocs=WORLD, join=True, start_method="spawn")
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    return {"ranks": ranks, "batches": batches}


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        diff = (a[k].double() - b[k].double()).abs().max()
        assert torch.equal(a[k], b[k]), f"{what}.{k} differs across ranks (max |diff| {diff})"


@pytest.mark.parametrize("case", sorted(IDENTITY_CASES))
def test_ranks_hold_identical_state(ddp, case: str) -> None:
    r0, r1 = (r["identity"][case] for r in ddp["ranks"])
    assert r0["step"] == r1["step"] == 6
    assert r0["n_classes"] == (10 if IDENTITY_CASES[case].get("conditional") else 0)
    for part in ("g", "d", "ema", "opt_g", "opt_d", "ema_epoch1"):
        assert r0[part], part
        _assert_identical(r0[part], r1[part], f"{case}.{part}")
    # Not vacuous: training moved the weights, EMA lags G, and G's BatchNorm running statistics
    # were updated (then averaged across ranks: without that sync they would differ, since each
    # rank normalises its own half of the batch). No family has BatchNorm in D.
    n_classes = r0["n_classes"]
    g0 = build_state(_cfg(**IDENTITY_CASES[case], num_workers=1), Context(), n_classes).g.state_dict()
    assert any(not torch.equal(g0[k], r0["g"][k]) for k in g0)
    assert any(not torch.equal(r0["ema"][k], r0["g"][k]) for k in r0["g"] if r0["g"][k].is_floating_point())
    if case in ("dcgan", "mlp_leaky"):
        for part in ("g",):
            means = {k: v for k, v in r0[part].items() if k.endswith("running_mean")}
            assert means, f"{part}: no BatchNorm"
            assert all(v.abs().max() > 0 for v in means.values()), f"{part}: BatchNorm stats never updated"


@pytest.mark.parametrize("loss", PARITY_LOSSES)
def test_two_workers_give_one_worker_gradients(ddp, loss: str) -> None:
    """2 x b/2 == 1 x b: D and G gradients on the same weights and batch, then (BCE) the weights and
    Adam moments after GRAD_STEPS steps."""
    single, single_grads = run_steps(_cfg(loss=loss, num_workers=1), Context(), ddp["batches"])
    for rank in ddp["ranks"]:
        two = rank["parity"][loss]
        for kind in ("d", "g"):
            assert len(two["grads"][kind]) == len(single_grads[kind]) == GRAD_STEPS, kind
            # Same weights, same global batch: the gradients must agree (step 0). Later steps start
            # from weights that differ by float rounding, which Adam's first update amplifies for
            # near-zero gradients (it moves each weight by about lr * sign(g)); the trajectory check
            # below covers them.
            g2, g1 = two["grads"][kind][0], single_grads[kind][0]
            assert g2.keys() == g1.keys() and g1, kind
            # (Single tensors may be exactly zero, e.g. hinge's last D bias at init.)
            assert any(g.abs().max() > 0 for g in g1.values()), f"{kind}: zero gradient"
            for k in g1:
                where = f"{kind} grad {k}"
                torch.testing.assert_close(g2[k], g1[k], **GRAD_TOL, msg=lambda m, w=where: f"{w}: {m}")
        if loss not in TRAJECTORY_LOSSES:
            continue
        # Trajectory: after GRAD_STEPS steps the weights (and Adam moments) still agree.
        one = _snapshot(single)
        for part in ("g", "d", "opt_g", "opt_d"):
            for k, v in one[part].items():
                where = f"{part}.{k} after {GRAD_STEPS} steps"
                torch.testing.assert_close(two[part][k], v, **WEIGHT_TOL, msg=lambda m, w=where: f"{w}: {m}")
    # Both ranks applied the same (all-reduced) gradients.
    for kind in ("d", "g"):
        for g_a, g_b in zip(*(r["parity"][loss]["grads"][kind] for r in ddp["ranks"]), strict=True):
            _assert_identical(g_a, g_b, f"{kind} grad")


def test_gradient_capture_sees_every_optimiser_step(train_cfg, random_images) -> None:
    """The pre-hook records one D and one G gradient per `train_step`, for every parameter."""
    cfg = train_cfg(batch_size=BATCH)
    batches = make_batches(random_images, 2)
    state, grads = run_steps(cfg, Context(), batches)
    assert len(grads["d"]) == len(grads["g"]) == 2
    assert set(grads["d"][0]) == {n for n, _ in unwrap(state.d).named_parameters()}
    assert set(grads["g"][0]) == {n for n, _ in unwrap(state.g).named_parameters()}
