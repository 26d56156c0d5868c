"""Every family learns: each network family with each loss trains a few hundred seeded steps on the
mnist5k digits and must (a) at least halve an untrained generator's FID and (b) produce at least
5 classes. A correctness check with fixed seeds, not a timing: it is what would have caught the
conv family collapsing onto one digit (BatchNorm in D).

Each family gets the regularisation it needs (the recipe knobs below). The seed's ReLU MLP
(`mlp`) learns with R1 or WGAN-GP but collapses onto 1-3 digits with the hinge loss whatever we
tried within a few hundred steps (SN, TTUR, R1 up to 200, d_steps 2, DiffAugment): that case is an
expected failure, kept strict so that a change that makes it learn is noticed.

Measured in the feature space of `digit_classifier` (conftest: the evaluation classifier's
architecture with another seed, trained for 4 epochs), on N = 500 samples against 500 train
images. Figures per case are printed (`pytest -s`)."""

from __future__ import annotations

import pytest
import torch

from ganmodel.config import TrainParams
from ganmodel.evaluation.coverage import class_coverage
from ganmodel.evaluation.distances import fid_from_features
from ganmodel.evaluation.features import extract, proportional_labels, sample_images
from ganmodel.networks import build_generator
from ganmodel.training.job import run_local

N = 500
STEPS = 300
# What each family needs to learn in STEPS steps: the recipe knobs only (the loss is the case).
EMA = dict(ema_decay=0.99, ema_rampup=True)
FAMILY = {
    "mlp": dict(arch="mlp", lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), r1_gamma=10.0, **EMA),
    "mlp_leaky": dict(arch="mlp_leaky", lr_g=1e-3, lr_d=1e-3, betas=(0.0, 0.9), spectral_norm=True, **EMA),
    "dcgan": dict(arch="dcgan", lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999)),
    "conv": dict(arch="conv", lr_g=1e-3, lr_d=1e-3, betas=(0.0, 0.9), spectral_norm=True),
}
# WGAN-GP brings its own penalty: no spectral norm or R1 on top (Gulrajani et al. 2017, sec. 4).
LOSS = {"bce": {}, "hinge": {}, "wgan_gp": dict(betas=(0.0, 0.9), spectral_norm=False, r1_gamma=0.0)}
COLLAPSES = {("mlp", "hinge")}


def _fid_and_classes(g, clf, real_feats, labels=None) -> tuple[float, float]:
    fake = sample_images(g, N, seed=7, batch_size=250, labels=labels)
    feats, logits = extract(clf, fake, 250)
    return fid_from_features(real_feats, feats), class_coverage(logits)["classes_covered"]


@pytest.fixture(scope="module")
def reference(mnist5k, digit_classifier):
    idx = torch.randperm(4000, generator=torch.Generator().manual_seed(3))[:N]
    feats, _ = extract(digit_classifier, mnist5k["train"].images[idx], 250)
    return feats


pytestmark = pytest.mark.slow

_COLLAPSE = pytest.mark.xfail(strict=True, reason="the seed's MLP collapses under hinge")
CASES = [pytest.param(f, loss, marks=_COLLAPSE) if (f, loss) in COLLAPSES else (f, loss)
         for f in FAMILY for loss in LOSS]


@pytest.mark.parametrize(("family", "loss"), CASES)
def test_every_family_learns(family, loss, mnist5k, digit_classifier, reference):
    torch.manual_seed(0)
    untrained = build_generator(FAMILY[family]["arch"], 64)
    fid0, _ = _fid_and_classes(untrained, digit_classifier, reference)
    cfg = TrainParams(preset="custom", loss=loss, z_dim=64, batch_size=64, epochs=STEPS // 60,
                      steps_per_epoch=60, num_workers=1, seed=0, **{**FAMILY[family], **LOSS[loss]})
    out = run_local(cfg, mnist5k["train"].images)
    g = build_generator(cfg.arch, cfg.z_dim)
    g.load_state_dict(out.generator)
    fid, classes = _fid_and_classes(g, digit_classifier, reference)
    print(f"\n{family:9s} {loss:7s} untrained FID {fid0:8.1f}  trained FID {fid:7.1f} "
          f"({fid / fid0:.2f}x)  classes {classes:.0f}")
    assert fid < fid0 / 2, (fid0, fid)
    assert classes >= 5, classes


def test_a_conditional_generator_makes_the_classes_it_is_asked_for(conditional_generator_file, mnist5k,
                                                                   digit_classifier, reference):
    from ganmodel.artifacts import load_generator

    g, meta = load_generator(conditional_generator_file)
    assert meta["conditional"] and meta["n_classes"] == 10 and g.n_classes == 10
    asked = proportional_labels(mnist5k["train"].labels, N, seed=5)
    fid, classes = _fid_and_classes(g, digit_classifier, reference, asked)
    _, logits = extract(digit_classifier, sample_images(g, N, 7, 250, asked), 250)
    acc = float((logits.argmax(1) == asked).double().mean())
    print(f"\nconditional conv hinge: FID {fid:.1f}, classes {classes:.0f}, accuracy {acc:.3f}")
    assert acc > 0.9 and classes == 10, (acc, classes)
