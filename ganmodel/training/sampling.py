"""Which training images a conditional GAN's epochs draw (`train.class_sampling`).

A user's folder is rarely balanced: openclipart has 1,403 training images in `computer` and 85 in
`office`. With the data's own frequencies, G is asked for a small class (and D judges it) on 1.6%
of its steps, and a class seen that rarely is the one a conditional generator fails to make. The
usual remedy for long-tailed data is to re-sample by class (Mahajan et al. 2018, "Exploring the
Limits of Weakly Supervised Pretraining", sec. 3.3: square-root sampling; Kang et al. 2020,
"Decoupling Representation and Classifier for Long-Tailed Recognition", eq. 1): class c is drawn
with probability p_c ∝ n_c^q,

- `data`: q = 1, the split's own frequencies (each epoch a permutation, as every earlier run drew);
- `sqrt`: q = 1/2, small classes seen more often without repeating a 20-image class 15 times an
  epoch (which invites D to memorise it);
- `balanced`: q = 0, every class equally often.

Re-sampling changes only how often each class is trained on: G is still asked for class y and D
still compares real and generated images of the same y, so what G learns per class, p(x | y), is
unchanged; BatchNorm recalibration and evaluation still use the data's class shares. An unconditional
G would instead learn the re-weighted mixture, so only conditional runs may re-sample.
"""

from __future__ import annotations

import torch

from ganmodel.errors import GanModelError

CLASS_SAMPLINGS = ("auto", "data", "sqrt", "balanced")
EXPONENT = {"data": 1.0, "sqrt": 0.5, "balanced": 0.0}
# `auto` re-samples (`sqrt`) once the largest class has this many times the images of the smallest:
# the classifier's `class_balance: auto` rule. Below it (mnist5k: 400 training images per class) the
# data's own order is kept, so the built-in datasets train exactly as before.
IMBALANCE_RATIO = 2.0
AUTO_SAMPLING = "sqrt"


def imbalance(labels: torch.Tensor) -> float:
    """Images in the largest class over images in the smallest (classes present in `labels`)."""
    counts = torch.bincount(labels.detach().cpu().long())
    present = counts[counts > 0].double()
    return float(present.max() / present.min()) if present.numel() else 1.0


def resolve_class_sampling(mode: str, labels: torch.Tensor | None, conditional: bool) -> str:
    """`train.class_sampling` resolved for a run: `data`, `sqrt` or `balanced`. `auto` is `sqrt` for
    a conditional run on classes at least `IMBALANCE_RATIO` apart, else `data`."""
    if mode not in CLASS_SAMPLINGS:
        raise ValueError(f"class sampling must be one of {CLASS_SAMPLINGS}, got {mode!r}")
    if mode != "auto":
        if mode != "data" and (not conditional or labels is None):
            raise GanModelError(f"train.class_sampling: {mode} re-samples the classes of a conditional "
                                "run; this run is unconditional (set it to data or auto)")
        return mode
    if not conditional or labels is None or labels.numel() == 0:
        return "data"
    return AUTO_SAMPLING if imbalance(labels) >= IMBALANCE_RATIO else "data"


def class_shares(labels: torch.Tensor, mode: str) -> torch.Tensor:
    """The share of an epoch's draws each class gets under `mode` (float64 [C], sums to 1)."""
    counts = torch.bincount(labels.detach().cpu().long()).double()
    p = torch.where(counts > 0, counts.clamp(min=1) ** EXPONENT[mode], torch.zeros_like(counts))
    return p / p.sum()


def image_weights(labels: torch.Tensor, mode: str) -> torch.Tensor | None:
    """Per-image draw weights [N] (float32, on `labels`' device) with class shares p_c ∝ n_c^q, or
    None for `data` (a plain permutation). Image i of class c weighs p_c / n_c."""
    if mode == "data":
        return None
    counts = torch.bincount(labels.long()).double()
    per_class = class_shares(labels, mode).to(counts.device) / counts.clamp(min=1)
    return per_class[labels.long()].float()


def describe(labels: torch.Tensor, mode: str) -> str:
    """One log line: the resolved sampling, and the smallest class's share before and after."""
    counts = torch.bincount(labels.detach().cpu().long())
    present = (counts > 0).nonzero().flatten()
    small = int(present[counts[present].argmin()])
    before = float(counts[small]) / float(counts.sum())
    after = float(class_shares(labels, mode)[small])
    return (f"class sampling: {mode} (largest class {imbalance(labels):.1f}x the smallest); "
            f"class {small}: {before:.1%} of the images, {after:.1%} of the draws")
