"""Training presets: named recipes that set the recipe keys of the `train` section (the preset
rule itself is `TrainParams._apply_preset`, in `sections`)."""

from __future__ import annotations

from typing import Any

# A preset is a named training recipe: it sets the RECIPE_KEYS of `train`. A recipe key given
# explicitly next to a preset must agree with it, or params are rejected naming both keys: a value
# that `dvc exp show` lists is always the value that trained. `custom` sets nothing, so every recipe
# key comes from params (or its default, the seed's value).
RECIPE_KEYS = ("arch", "conditional", "loss", "lr_g", "lr_d", "betas", "batch_size", "z_dim", "d_steps",
               "r1_gamma", "augment", "ema_decay", "ema_rampup", "spectral_norm", "mbstd_group", "precision")
# The classic MLP GAN of the seed article, exactly: the baseline every improvement is measured against.
SEED_PRESET: dict[str, Any] = {
    "arch": "mlp", "conditional": False, "loss": "bce", "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.9, 0.999),
    "batch_size": 128, "z_dim": 100, "d_steps": 1, "r1_gamma": 0.0, "augment": (), "ema_decay": 0.0,
    "ema_rampup": False, "spectral_norm": False, "mbstd_group": 0, "precision": "fp32",
}
DEFAULT_PRESET = "conv_sn_cond"  # train.preset's default (params.yaml); defined below
PRESETS: dict[str, dict[str, Any]] = {
    "custom": {},
    "seed": SEED_PRESET,
    # The seed's widths and loss with the usual MLP-GAN stabilisers: LeakyReLU, BatchNorm in G,
    # Dropout in D (arch mlp_leaky), DCGAN's beta1 0.5 and an EMA generator.
    "mlp_leaky": {**SEED_PRESET, "arch": "mlp_leaky", "betas": (0.5, 0.999), "ema_decay": 0.995},
    # The best recipe at the `make run` budget on this project's CPUs (benchmarks/quality.py): the
    # `conv` family (no BatchNorm in D), hinge loss with spectral norm (Miyato et al. 2018), Adam
    # (0, 0.9) at 2e-3 for both nets, batch 64, an EMA generator with ramp-up, and bf16 autocast where
    # the device has native bf16 (precision auto: 1.16x on an AVX512-BF16 CPU's conv nets with no
    # quality loss measured, benchmarks/README.md; emulated bf16 is 10-20x slower, so fp32 elsewhere).
    "conv_sn": {**SEED_PRESET, "arch": "conv", "loss": "hinge", "spectral_norm": True, "lr_g": 2e-3,
                "lr_d": 2e-3, "betas": (0.0, 0.9), "batch_size": 64, "z_dim": 64, "ema_decay": 0.999,
                "ema_rampup": True, "precision": "auto"},
}
# The same recipe, conditional: G asked for a class, a projection D (Miyato & Koyama 2018).
PRESETS["conv_sn_cond"] = {**PRESETS["conv_sn"], "conditional": True, "lr_g": 1e-3, "lr_d": 1e-3}
# For colour folders (photos, clip-art, icons): the same nets and loss with DiffAugment on every
# image D sees (Zhao et al. 2020: translation, colour, cutout), which keeps D from memorising a few
# thousand images, and two time-scale rates (Heusel et al. 2017: D 4x G). Measured on openclipart
# at 32 px, 15 epochs, FID in a rotation net of its own (not the evaluation's; docs/quality.md,
# "Colour folders"): conv_sn_cond's 1e-3 kills D within five epochs (hinge loss pinned at 2.0, one
# image per class); DiffAugment with equal rates of 2e-4 keeps D alive but gives one image per
# class (FID 38.9); G 1e-4 / D 4e-4 varied images (39.9), G 2e-4 / D 8e-4 the same faster (17.4,
# against 18.6 for the 2-px-blurred real images and 2.1 for real ones).
# Longer runs then collapse within each class (openclipart 32 px, 150 epochs: recall 0.14 against
# the real 0.85, three near-identical samples per class); a minibatch-stddev channel in D (Karras et
# al. 2018) lets D see a batch without variety: at equal training time (400 s, a feature net of its
# own) FID 319 vs 542, recall 0.11 vs 0.02, classes 16 vs 8 of 18 (docs/quality.md).
_COLOUR = {"augment": ("translation", "color", "cutout"), "lr_g": 2e-4, "lr_d": 8e-4, "mbstd_group": 4}
PRESETS["conv_sn_da"] = {**PRESETS["conv_sn"], **_COLOUR}
PRESETS["conv_sn_cond_da"] = {**PRESETS["conv_sn_cond"], **_COLOUR}


def _same(a: Any, b: Any) -> bool:
    """Equal as params: sequences compare element-wise whatever their type (YAML lists, tuples)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
