"""DiffAugment: each op does what it says, is differentiable, and per-rank slices of parameters
drawn for the global batch augment exactly as the global batch does (DDP == one process)."""

from __future__ import annotations

import pytest
import torch

from ganmodel.augment import AUGMENTATIONS, BACKGROUND, DiffAugment, take


def _dot(r: int, c: int, n: int = 1) -> torch.Tensor:
    x = torch.full((n, 1, 28, 28), BACKGROUND)
    x[:, 0, r, c] = 1.0
    return x


def test_translation_moves_by_the_drawn_shift_and_fills_with_background():
    aug = DiffAugment(["translation"])
    out = aug(_dot(10, 10, 2), [torch.tensor([[2, -3], [-11, 0]])])
    assert (out[0, 0] == 1).nonzero().tolist() == [[12, 7]]
    assert not (out[1, 0] == 1).any()  # shifted off the image
    assert out.min() == BACKGROUND and out.shape == (2, 1, 28, 28)


def test_cutout_blanks_a_square_around_the_centre():
    x = torch.ones(1, 1, 28, 28)
    out = DiffAugment(["cutout"])(x, [torch.tensor([[14, 14]])])
    hole = out[0, 0] == BACKGROUND
    assert hole.sum() == 13 * 13 and hole[14, 14] and not hole[0, 0]  # half size 14: |d| < 7


def test_color_keeps_the_shape_and_changes_brightness_and_contrast():
    x = torch.linspace(-1, 1, 784).view(1, 1, 28, 28)
    out = DiffAugment(["color"])(x, [torch.tensor([[1.0, 1.0]])])  # +0.5 brightness, x1.5 contrast
    assert torch.allclose(out - out.mean(), 1.5 * (x - x.mean()), atol=1e-5)
    assert float(out.mean()) == pytest.approx(float(x.mean()) + 0.5, abs=1e-5)


def test_policies_are_differentiable_and_named():
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    aug = DiffAugment(list(AUGMENTATIONS))
    params = aug.sample(4, torch.Generator().manual_seed(0), torch.device("cpu"))
    aug(x, params).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        DiffAugment(["flip"])


def test_rank_slices_of_global_parameters_match_the_global_batch():
    aug = DiffAugment(["translation", "cutout", "color"])
    x = torch.randn(8, 1, 28, 28)
    params = aug.sample(8, torch.Generator().manual_seed(1), torch.device("cpu"))
    whole = aug(x, params)
    halves = torch.cat([aug(x[:4], take(params, 0, 4)), aug(x[4:], take(params, 4, 8))])
    assert torch.equal(whole, halves)
    again = aug.sample(8, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(params, again, strict=True))  # seeded
