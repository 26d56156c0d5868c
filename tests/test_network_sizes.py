"""Networks at any size: the conv families build G and D for C x R x R with R = r0 * 2^n (r0 4-7,
n >= 2), the MLP families for 1x28x28 only, and at 1x28x28 the conv nets are main's, weight for
weight (tests/frozen_dcgan.py), so a seeded run trains exactly as before. Params reject a recipe
that cannot build the data's shape, naming the keys; the generator file keeps its shape."""

from __future__ import annotations

import pytest
import torch
from frozen_dcgan import FROZEN
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganmodel.artifacts import load_generator, save_generator
from ganmodel.augment import DiffAugment
from ganmodel.config import TrainParams, parse_params
from ganmodel.errors import GanModelError
from ganmodel.networks import build_discriminator, build_generator
from ganmodel.shapes import buildable, conv_plan, nearest_conv_resolutions

BUILDABLE = [16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256]


def _sn(d: nn.Module) -> nn.Module:
    """What build_discriminator(spectral_norm=True) does, on a frozen D."""
    for m in list(d.modules()):
        if isinstance(m, nn.Linear | nn.Conv2d | nn.Embedding):
            spectral_norm(m)
    return d


@pytest.mark.parametrize("arch", sorted(FROZEN))
@pytest.mark.parametrize("n_classes", [0, 10])
@pytest.mark.parametrize("sn", [False, True])
def test_at_28_the_conv_nets_are_mains_weight_for_weight(arch: str, n_classes: int, sn: bool) -> None:
    frozen_g, frozen_d = FROZEN[arch]
    torch.manual_seed(0)
    ref = [frozen_g(z_dim=64, n_classes=n_classes)]
    ref.append(_sn(frozen_d(n_classes=n_classes)) if sn else frozen_d(n_classes=n_classes))
    ref_rng = torch.get_rng_state()
    torch.manual_seed(0)
    new = [build_generator(arch, 64, n_classes), build_discriminator(arch, sn, n_classes)]
    assert torch.equal(torch.get_rng_state(), ref_rng)  # the same draws, in the same order
    for a, b in zip(ref, new, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and repr(a) == repr(b)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    z, y = torch.randn(4, 64), (torch.arange(4) if n_classes else None)
    args = (z,) if y is None else (z, y)
    img = new[0](*args)
    assert torch.equal(ref[0](*args), img)
    img_args = (img,) if y is None else (img, y)
    assert torch.equal(ref[1](*img_args), new[1](*img_args))


def test_the_buildable_sides() -> None:
    assert [r for r in range(1, 300) if conv_plan(r)] == BUILDABLE
    assert conv_plan(28) == (7, 2) and conv_plan(32) == (4, 3) and conv_plan(224) == (7, 5)
    assert nearest_conv_resolutions(36) == [32, 40] and nearest_conv_resolutions(8) == [16]
    assert nearest_conv_resolutions(257) == [256, 320]
    for arch in ("conv", "dcgan"):
        assert all(buildable(arch, (3, r, r)) is None for r in BUILDABLE)
    assert buildable("mlp", (1, 28, 28)) is None and buildable("mlp_leaky", (1, 28, 28)) is None


SHAPES = [(3, 32, 32), (3, 64, 64), (1, 16, 16), (3, 128, 128)]


@pytest.mark.parametrize("arch", ["conv", "dcgan"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("n_classes", [0, 5])
def test_conv_nets_at_other_sizes(arch: str, shape: tuple[int, int, int], n_classes: int) -> None:
    if arch == "dcgan" and shape[1] == 128 and n_classes:
        pytest.skip("the widest case, covered by conv")  # keeps the lane quick
    torch.manual_seed(0)
    g = build_generator(arch, 16, n_classes, shape)
    d = build_discriminator(arch, True, n_classes, shape)
    assert g.image_shape == d.image_shape == shape and g.z_dim == 16 and g.n_classes == n_classes
    z, y = torch.randn(3, 16), (torch.arange(3) % 5 if n_classes else None)
    img = g(z) if y is None else g(z, y)
    assert img.shape == (3, *shape) and img.min() >= -1 and img.max() <= 1
    out = d(img) if y is None else d(img, y)
    assert out.shape == (3,) and torch.isfinite(out).all()
    # Widths: G's top stage and D's last strided conv stay within 8w.
    w = 32 if arch == "conv" else 64
    assert max(m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)) <= 8 * w
    assert g.top <= 8 * w
    # Each net checks what crosses its boundary against its own shape.
    with pytest.raises(ValueError, match="expected shape"):
        d(torch.zeros(3, 1, 28, 28)) if y is None else d(torch.zeros(3, 1, 28, 28), y)


def test_widths_follow_the_resolution() -> None:
    g32, d32 = build_generator("conv", 8, 0, (3, 32, 32)), build_discriminator("conv", False, 0, (3, 32, 32))
    convt = [(m.in_channels, m.out_channels) for m in g32.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert (g32.top, g32.base, convt) == (128, 4, [(128, 64), (64, 32), (32, 3)])
    strided = [(m.in_channels, m.out_channels, m.kernel_size[0])
               for m in d32.modules() if isinstance(m, nn.Conv2d)]
    assert strided == [(3, 32, 4), (32, 64, 4), (64, 128, 4), (128, 256, 3)]
    assert d32.head.in_features == 256 * 2 * 2
    g256 = build_generator("conv", 8, 0, (3, 256, 256))
    assert (g256.top, g256.base) == (256, 4)  # 8w, capped


@pytest.mark.parametrize("arch", ["conv", "dcgan"])
def test_an_unbuildable_side_is_one_line_naming_the_shape_and_the_nearest(arch: str) -> None:
    for build in (lambda: build_generator(arch, 16, 0, (3, 36, 36)),
                  lambda: build_discriminator(arch, False, 0, (3, 36, 36))):
        with pytest.raises(ValueError) as exc:
            build()
        msg = str(exc.value)
        assert "\n" not in msg and f"arch {arch}" in msg and "3x36x36" in msg and "32x32 or 40x40" in msg
    with pytest.raises(ValueError, match="square"):
        build_generator(arch, 16, 0, (3, 32, 64))


@pytest.mark.parametrize("arch", ["mlp", "mlp_leaky"])
def test_mlp_families_build_28x28_greyscale_only(arch: str) -> None:
    assert build_generator(arch, 8).image_shape == (1, 28, 28)
    for shape in ((3, 28, 28), (1, 32, 32)):
        for build in (build_generator, build_discriminator):
            with pytest.raises(ValueError) as exc:
                build(arch, *((8, 0) if build is build_generator else (False, 0)), shape)
            assert "\n" not in str(exc.value) and "x".join(map(str, shape)) in str(exc.value)
            assert "1x28x28 images only" in str(exc.value)


def _colour(resolution: int = 32, **train: object) -> dict:
    return {"data": {"dataset": "folder", "resolution": resolution, "channels": 3}, "train": train}


def test_params_reject_a_recipe_that_cannot_build_the_data() -> None:
    with pytest.raises(GanModelError) as exc:
        parse_params(_colour(preset="seed"))
    assert str(exc.value) == ("params.yaml: train.preset: seed (arch mlp) builds 1x28x28 images only, "
                              "not 3x32x32; data.channels 3 and data.resolution 32 give 3x32x32: "
                              "choose train.preset conv_sn_cond/conv_sn/conv_sn_da/conv_sn_cond_da")
    with pytest.raises(GanModelError, match=r"train\.arch: mlp_leaky builds 1x28x28 images only.*"
                                            r"choose train\.arch conv/dcgan"):
        parse_params(_colour(preset="custom", arch="mlp_leaky"))
    with pytest.raises(GanModelError, match=r"train\.preset: conv_sn_cond \(arch conv\) cannot build "
                                            r"3x36x36.*set data\.resolution 32 or 40"):
        parse_params(_colour(36))
    assert parse_params(_colour(64)).train.arch == "conv"  # the default recipe builds any buildable side
    assert parse_params({"train": {"preset": "seed"}}).train.arch == "mlp"  # mnist5k: 1x28x28


def test_config_loads_no_torch() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, ganmodel.config; print(any(m.partition('.')[0] == 'torch' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1]).stdout.strip() == "False"


def test_the_generator_file_keeps_its_shape(tmp_path) -> None:
    torch.manual_seed(0)
    g = build_generator("conv", 8, 3, (3, 32, 32))
    meta = {"arch": "conv", "z_dim": 8, "conditional": True, "n_classes": 3, "image_shape": [3, 32, 32]}
    save_generator(g.state_dict(), meta, tmp_path / "g.pt")
    back, _ = load_generator(tmp_path / "g.pt")
    assert back.image_shape == (3, 32, 32)
    assert all(torch.equal(a, b)
               for a, b in zip(g.state_dict().values(), back.state_dict().values(), strict=True))
    # Files from before image_shape was recorded are 1x28x28.
    old = build_generator("conv", 8)
    save_generator(old.state_dict(), {"arch": "conv", "z_dim": 8}, tmp_path / "old.pt")
    assert load_generator(tmp_path / "old.pt")[0].image_shape == (1, 28, 28)
    save_generator(old.state_dict(), {**meta, "conditional": False, "n_classes": 0}, tmp_path / "bad.pt")
    with pytest.raises(GanModelError, match=r"image_shape \[3, 32, 32\]"):  # 1x28x28 weights
        load_generator(tmp_path / "bad.pt")


def test_the_loop_trains_at_the_datas_shape() -> None:
    """A conditional conv run on 3x32x32 images with DiffAugment: nets, sample sheets and the
    shipped generator are at the data's shape; translation reaches 1/8 of the side."""
    from ganmodel.training.job import run_local

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(64) % 2
    cfg = TrainParams(preset="custom", arch="conv", conditional=True, loss="hinge", spectral_norm=True,
                      batch_size=16, z_dim=8, epochs=1, steps_per_epoch=2, augment=("translation", "cutout"),
                      ema_decay=0.9, num_workers=1, eval_every=0)
    out = run_local(cfg, images, labels=labels, n_classes=2)
    g = build_generator("conv", 8, 2, (3, 32, 32))
    g.load_state_dict(out.generator)
    assert g.eval()(out.fixed_noise[:2], out.fixed_labels[:2]).shape == (2, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    assert DiffAugment(["translation"], 64).sample(2000, gen, torch.device("cpu"))[0].abs().max() == 8
    assert DiffAugment(["translation"]).sample(2000, gen, torch.device("cpu"))[0].abs().max() == 4  # 28
    with pytest.raises(GanModelError, match=r"train\.arch: mlp builds 1x28x28 images only, not 3x32x32"):
        run_local(TrainParams(preset="seed", epochs=1, steps_per_epoch=1, num_workers=1), images)


def test_a_conditional_recipe_needs_labelled_data() -> None:
    from ganmodel.training.job import check_labels_fit

    cfg = TrainParams(preset="conv_sn_cond", num_workers=1)
    check_labels_fit(cfg, {"classes": ["a", "b"], "labelled": True}, "data/prepared")
    with pytest.raises(GanModelError) as exc:
        check_labels_fit(cfg, {"classes": ["photos"], "labelled": False}, "data/prepared")
    assert str(exc.value) == ("train.preset conv_sn_cond asks for a conditional generator, but data/prepared "
                              "has 1 class (unlabelled images): use train.preset conv_sn (the same recipe, "
                              "unconditional)")
    check_labels_fit(TrainParams(preset="conv_sn", num_workers=1), {"classes": ["photos"]}, "x")
    fix = r"use train\.preset conv_sn_da \(the same recipe, unconditional\)$"
    with pytest.raises(GanModelError, match=fix):
        check_labels_fit(TrainParams(preset="conv_sn_cond_da", num_workers=1), {"classes": ["photos"]}, "x")
    custom = TrainParams(preset="custom", arch="conv", conditional=True, num_workers=1)
    with pytest.raises(GanModelError, match=r"^train\.conditional true .* set train\.conditional: false$"):
        check_labels_fit(custom, {"classes": ["photos"]}, "x")


def test_every_conditional_preset_has_its_unconditional_twin() -> None:
    """check_labels_fit names `<preset without _cond>` as the fix: it must exist and differ only in
    `conditional` (and the rates the conditional recipe changed)."""
    from ganmodel.config import PRESETS

    for name, recipe in PRESETS.items():
        if recipe.get("conditional"):
            twin = PRESETS[name.replace("_cond", "")]
            assert twin["conditional"] is False and twin["arch"] == recipe["arch"], name
            assert twin["augment"] == recipe["augment"] and twin["loss"] == recipe["loss"], name
