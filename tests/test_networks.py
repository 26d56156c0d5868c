"""Networks: our MLP G/D are the seed article's networks (same layers, weights load both ways,
same outputs), DCGAN shapes, shape checks, and the BCE loss equals the seed's BCELoss sum."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from ganmodel.losses import GRADIENT_PENALTY, LOSSES, gradient_penalty
from ganmodel.networks import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    check_shape,
)
from ganmodel.networks.dcgan import DCGANDiscriminator, DCGANGenerator, MinibatchStd
from ganmodel.networks.mlp import MLPDiscriminator, MLPGenerator

# --- the seed article's networks, verbatim, from the one place the article's code lives --------
_spec = importlib.util.spec_from_file_location(
    "classic_gan", Path(__file__).resolve().parents[1] / "benchmarks" / "classic_gan.py")
classic_gan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(classic_gan)
Generator, Discriminator = classic_gan.Generator, classic_gan.Discriminator
latent_dim = classic_gan.latent_dim


def _linear_sizes(m: nn.Module) -> list[tuple[int, int]]:
    return [(layer.in_features, layer.out_features) for layer in m.modules() if isinstance(layer, nn.Linear)]


def _activations(m: nn.Module) -> list[str]:
    return [type(layer).__name__ for layer in m.model if not isinstance(layer, nn.Linear)]


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_mlp_generator_matches_the_seed() -> None:
    ours, classic = MLPGenerator(z_dim=latent_dim), Generator()
    assert _linear_sizes(ours) == _linear_sizes(classic) == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    assert _activations(ours) == _activations(classic) == ["ReLU", "ReLU", "ReLU", "Tanh"]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in classic.state_dict().items()}
    assert _n_params(ours) == _n_params(classic) == 1_486_352


def test_mlp_discriminator_matches_the_seed() -> None:
    ours, classic = MLPDiscriminator(), Discriminator()
    assert _linear_sizes(ours) == _linear_sizes(classic) == [(784, 1024), (1024, 512), (512, 256), (256, 1)]
    # Ours returns the logit: the seed's final Sigmoid lives in the loss.
    assert _activations(ours) == ["ReLU", "ReLU", "ReLU"]
    assert _activations(classic) == ["ReLU", "ReLU", "ReLU", "Sigmoid"]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in classic.state_dict().items()}
    assert _n_params(ours) == _n_params(classic) == 1_460_225


def test_seed_weights_load_into_ours_and_give_the_same_outputs() -> None:
    torch.manual_seed(0)
    classic_g, classic_d = Generator().eval(), Discriminator().eval()
    ours_g, ours_d = MLPGenerator(), MLPDiscriminator()
    ours_g.load_state_dict(classic_g.state_dict(), strict=True)
    ours_d.load_state_dict(classic_d.state_dict(), strict=True)
    ours_g.eval()
    ours_d.eval()
    z = torch.randn(16, latent_dim)
    with torch.no_grad():
        img = ours_g(z)
        assert img.shape == (16, 1, 28, 28) and ours_g.image_shape == (1, 28, 28)
        assert torch.equal(img, classic_g(z).view(-1, 1, 28, 28))
        logits = ours_d(img)
        assert logits.shape == (16,)
        classic_out = classic_d(img.view(-1, 784))
        assert classic_out.shape == (16, 1)
        torch.testing.assert_close(torch.sigmoid(logits), classic_out.squeeze(1), rtol=0, atol=1e-6)


def test_our_weights_load_into_the_seed() -> None:
    torch.manual_seed(1)
    ours_g, ours_d = MLPGenerator(), MLPDiscriminator()
    classic_g, classic_d = Generator(), Discriminator()
    classic_g.load_state_dict(ours_g.state_dict(), strict=True)
    classic_d.load_state_dict(ours_d.state_dict(), strict=True)
    z = torch.randn(4, latent_dim)
    with torch.no_grad():
        assert torch.equal(classic_g(z), ours_g(z).flatten(1))


def test_registry_builds_every_family() -> None:
    assert set(GENERATORS) == set(DISCRIMINATORS) >= {"mlp", "mlp_leaky", "dcgan", "conv"}
    assert isinstance(build_generator("mlp", 100), MLPGenerator)
    assert isinstance(build_discriminator("mlp"), MLPDiscriminator)
    assert isinstance(build_generator("dcgan", 64), DCGANGenerator)
    assert isinstance(build_discriminator("dcgan"), DCGANDiscriminator)


FAMILIES = ["mlp", "mlp_leaky", "dcgan", "conv"]


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("z_dim", [100, 16])
def test_generator_and_discriminator_shapes(arch: str, z_dim: int) -> None:
    torch.manual_seed(0)
    g, d = build_generator(arch, z_dim), build_discriminator(arch)
    for batch in (1, 5) if arch == "mlp" else (2, 5):  # BatchNorm in train mode needs B > 1
        img = g(torch.randn(batch, z_dim))
        assert img.shape == (batch, 1, 28, 28)
        assert img.min() >= -1 and img.max() <= 1  # tanh range
        out = d(img)
        assert out.shape == (batch,)
    g.eval()
    assert g(torch.randn(1, z_dim)).shape == (1, 1, 28, 28)


@pytest.mark.parametrize("arch", FAMILIES)
def test_conditional_nets_take_one_label_per_row(arch: str) -> None:
    torch.manual_seed(0)
    g, d = build_generator(arch, 16, n_classes=10), build_discriminator(arch, True, n_classes=10)
    z, y = torch.randn(6, 16), torch.arange(6) % 10
    img = g(z, y)
    assert img.shape == (6, 1, 28, 28) and d(img, y).shape == (6,)
    assert g.n_classes == 10 and build_generator(arch, 16).n_classes == 0
    # The label changes the output (it is read), for G and for D's projection.
    g.eval()
    assert not torch.allclose(g(z, y), g(z, (y + 1) % 10))
    with torch.no_grad():
        d.embed.parametrizations.weight.original.normal_()  # the projection starts near zero
    assert not torch.allclose(d(img, y), d(img, (y + 1) % 10))
    with pytest.raises(ValueError, match="expected integer labels"):
        g(z)
    with pytest.raises(ValueError, match="expected integer labels \\[6\\]"):
        d(img, y[:3])
    with pytest.raises(ValueError, match="unconditional network takes no labels"):
        build_generator(arch, 16)(z, y)


@pytest.mark.parametrize("arch", ["dcgan", "conv"])
def test_conv_discriminators_have_no_batchnorm(arch: str) -> None:
    """BatchNorm in D normalises the D step (real + fake) and the G step (fake only) differently;
    G then learns to fool the fake-only statistics and collapses."""
    d = build_discriminator(arch, n_classes=10)
    assert not [m for m in d.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("arch", FAMILIES)
def test_wrong_input_shapes_raise(arch: str) -> None:
    g, d = build_generator(arch, 100), build_discriminator(arch)
    with pytest.raises(ValueError, match="expected shape"):
        g(torch.randn(4, 64))  # wrong z_dim
    with pytest.raises(ValueError, match="expected shape"):
        g(torch.randn(4, 100, 1))
    with pytest.raises(ValueError, match="expected shape"):
        d(torch.randn(4, 784))  # flat images: the seed's D input, not ours
    with pytest.raises(ValueError, match="expected shape"):
        d(torch.randn(4, 3, 28, 28))
    with pytest.raises(ValueError, match="expected shape"):
        d(torch.randn(4, 1, 32, 32))


@pytest.mark.parametrize("arch", FAMILIES)
def test_spectral_norm_wraps_every_weight_layer_of_d(arch: str) -> None:
    from torch.nn.utils import parametrize

    d = build_discriminator(arch, spectral_norm=True)
    layers = [m for m in d.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    cond = build_discriminator(arch, spectral_norm=True, n_classes=10)
    assert parametrize.is_parametrized(cond.embed, "weight")  # the projection too
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(parametrize.is_parametrized(m) for m in build_discriminator(arch).modules())
    torch.manual_seed(0)
    d.eval()
    with torch.no_grad():
        for _ in range(30):  # power iteration runs in train mode; eval uses the estimate
            d.train()(torch.rand(4, 1, 28, 28) * 2 - 1)
        w = layers[0].weight  # the normalised weight: largest singular value ~1
    assert torch.linalg.matrix_norm(w.flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_check_shape_message() -> None:
    check_shape(torch.zeros(3, 1, 28, 28), (1, 28, 28), "x")
    with pytest.raises(ValueError) as exc:
        check_shape(torch.zeros(3, 28, 28), (1, 28, 28), "my tensor")
    assert "my tensor" in str(exc.value) and "[3, 28, 28]" in str(exc.value)


def test_dcgan_init_follows_the_paper() -> None:
    torch.manual_seed(0)
    g = DCGANGenerator()
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    w = torch.cat([m.weight.flatten() for m in convs])
    assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3


# --- losses ---------------------------------------------------------------------------------------


def test_loss_registry() -> None:
    assert set(LOSSES) == {"bce", "hinge", "wgan_gp"}
    assert GRADIENT_PENALTY == {"wgan_gp": 10.0}


def test_bce_equals_the_seeds_bce_loss_on_sigmoid_outputs() -> None:
    torch.manual_seed(0)
    real_logits, fake_logits = torch.randn(32) * 3, torch.randn(32) * 3
    criterion = nn.BCELoss()  # the seed's criterion, on D's sigmoid outputs [B, 1]
    real_out, fake_out = torch.sigmoid(real_logits).unsqueeze(1), torch.sigmoid(fake_logits).unsqueeze(1)
    real_labels, fake_labels = torch.ones(32, 1), torch.zeros(32, 1)
    seed_d = criterion(real_out, real_labels) + criterion(fake_out, fake_labels)
    seed_g = criterion(fake_out, real_labels)
    bce = LOSSES["bce"]
    torch.testing.assert_close(bce.d_loss(real_logits, fake_logits), seed_d, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bce.g_loss(fake_logits), seed_g, rtol=1e-5, atol=1e-6)


def test_bce_through_the_seed_networks() -> None:
    """End to end: seed D + BCELoss == our D + our BCE, on the same weights and batch."""
    torch.manual_seed(3)
    classic_g, classic_d = Generator(), Discriminator()
    ours_d = MLPDiscriminator()
    ours_d.load_state_dict(classic_d.state_dict())
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    fake = classic_g(torch.randn(8, latent_dim)).view(-1, 1, 28, 28)
    criterion = nn.BCELoss()
    seed = (criterion(classic_d(real.view(-1, 784)), torch.ones(8, 1))
            + criterion(classic_d(fake.view(-1, 784)), torch.zeros(8, 1)))
    ours = LOSSES["bce"].d_loss(ours_d(real), ours_d(fake))
    torch.testing.assert_close(ours, seed, rtol=1e-5, atol=1e-6)


def test_hinge_and_wgan_values() -> None:
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    hinge, wgan = LOSSES["hinge"], LOSSES["wgan_gp"]
    # relu(1 - real) = [0, .5, 2] -> 2.5/3; relu(1 + fake) = [0, 1, 2] -> 1
    torch.testing.assert_close(hinge.d_loss(real, fake), torch.tensor(2.5 / 3 + 1.0))
    torch.testing.assert_close(hinge.g_loss(fake), torch.tensor(1.0 / 3))
    torch.testing.assert_close(wgan.d_loss(real, fake), torch.tensor(-1.0 / 3 - 0.5))
    torch.testing.assert_close(wgan.g_loss(fake), torch.tensor(1.0 / 3))


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic() -> None:
    class UnitCritic(nn.Module):  # D(x) = <x, u> with ||u|| = 1: gradient norm 1 everywhere
        def __init__(self) -> None:
            super().__init__()
            u = torch.randn(784)
            self.u = nn.Parameter(u / u.norm())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) @ self.u

    torch.manual_seed(0)
    critic = UnitCritic()
    real, fake = torch.randn(6, 1, 28, 28), torch.randn(6, 1, 28, 28)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic.u.mul_(3.0)  # gradient norm 3 -> penalty (3 - 1)^2 = 4
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0, rel=1e-5)


def test_minibatch_std_sees_variety_within_consecutive_groups_only() -> None:
    """Karras et al. 2018, sec. 3: one extra channel, the mean feature stddev of each group. Groups
    are consecutive, so the D step's [real; fake] batch never mixes the halves in one group."""
    x = torch.randn(8, 2, 3, 3)
    x[4:] = 0.5  # a collapsed half: no variety within its groups
    out = MinibatchStd(4)(x)
    assert out.shape == (8, 3, 3, 3) and torch.equal(out[:, :2], x)
    s = out[:, 2]
    assert torch.all(s[4:] < 1e-3) and torch.all(s[:4] > 0.3)  # the real half is not diluted
    assert torch.all(s[:4] == s[0]) and torch.all(s[4:] == s[4])  # one value per group, everywhere
    assert MinibatchStd(4)(torch.randn(6, 2, 3, 3)).shape == (6, 3, 3, 3)  # groups of 3: 4 does not divide 6
    assert MinibatchStd(4)(torch.randn(1, 2, 3, 3)).shape == (1, 3, 3, 3)


@pytest.mark.parametrize("arch", ["conv", "dcgan"])
def test_mbstd_discriminator_at_any_size(arch: str) -> None:
    for shape in ((1, 28, 28), (3, 32, 32), (3, 64, 64)):
        d = build_discriminator(arch, True, 5, shape, mbstd_group=4)
        assert any(isinstance(m, MinibatchStd) for m in d.modules())
        assert d(torch.randn(12, *shape), torch.randint(0, 5, (12,))).shape == (12,)
    with pytest.raises(ValueError, match="minibatch-stddev"):
        build_discriminator("mlp", mbstd_group=4)
