"""The calibration ladder: what known-bad "generators" made from the data itself score, so that
a generator's FID reads against a scale of the same dataset, feature network and N.

Its rungs are held-out real images (the floor: what a perfect generator scores at this N), then the
same images blurred by a Gaussian of standard deviation 1, 2 and 4 pixels, each scored by FID
(Heusel et al. 2017) against the reference set A. `ladder_blur<s>_ratio` is the rung's FID over
the floor's; `ladder_position` says where a generator stands. The 1-px ratio is also how widely a
feature network spreads quality at all: the classifier stage ships the network whose ladder
spreads widest (`ganmodel.classifier.choice`). Blurs grade images from real to useless in a known
order, as in the calibration table of docs/evaluation.md; the same degradation is used by
Heusel et al. 2017 (fig. 1) to show FID is consistent with image disturbance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganmodel.data.prepared import to_unit_range
from ganmodel.evaluation.distances import fid_against, fid_metric
from ganmodel.evaluation.features import extract
from ganmodel.evaluation.sources import HeldOut, Images, images_at, n_images

BLUR_SIGMAS = (1, 2, 4)  # pixels, at the data's own resolution
REAL = "ladder_real"
# Rungs from best to worst, as the keys of a ladder.
RUNGS = (REAL, *(f"ladder_blur{s}" for s in BLUR_SIGMAS))


def gaussian_blur(sigma: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A Gaussian blur of standard deviation `sigma` pixels (kernel 2 * ceil(3 sigma) + 1, reflect
    padding), per channel: a known, graded degradation of real images ([B, C, H, W] in [-1, 1])."""
    radius = max(1, int(-(-3 * sigma // 1)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k1 = torch.exp(-(t**2) / (2 * sigma**2))
    k1 = k1 / k1.sum()

    def blur(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        # Reflect padding needs the pad to be smaller than the side: replicate beyond that.
        mode = "reflect" if radius < x.shape[-1] else "replicate"
        x = F.pad(x, (radius, radius, radius, radius), mode=mode)
        x = F.conv2d(x, k1.view(1, 1, 1, -1).repeat(c, 1, 1, 1).to(x), groups=c)
        return F.conv2d(x, k1.view(1, 1, -1, 1).repeat(c, 1, 1, 1).to(x), groups=c)

    return blur


def blurred_features(model: nn.Module, images: torch.Tensor, sigma: float, batch_size: int) -> torch.Tensor:
    """Features [N, D] (float64) of uint8 `images` blurred by `sigma` px, a batch at a time (a
    float copy of a large set of large images would not fit)."""
    blur = gaussian_blur(sigma)
    parts = [extract(model, blur(to_unit_range(images[lo : lo + batch_size])).clamp_(-1, 1), batch_size)[0]
             for lo in range(0, images.shape[0], batch_size)]
    return torch.cat(parts)


def ladder_against(model: nn.Module, reference: torch.Tensor, heldout: torch.Tensor, batch_size: int,
                   heldout_feats: torch.Tensor | None = None) -> dict[str, float]:
    """The ladder of `heldout` real images (uint8 [N, C, H, W]) against `reference` features
    [N, D] (set A): `ladder_real` (the floor), `ladder_blur<s>` and `ladder_blur<s>_ratio`."""
    metric = fid_metric(reference)
    if heldout_feats is None:
        heldout_feats = extract(model, heldout, batch_size)[0]
    out = {REAL: fid_against(metric, heldout_feats)}
    for s in BLUR_SIGMAS:
        out[f"ladder_blur{s}"] = fid_against(metric, blurred_features(model, heldout, s, batch_size))
    for s in BLUR_SIGMAS:
        out[f"ladder_blur{s}_ratio"] = out[f"ladder_blur{s}"] / max(out[REAL], 1e-12)
    return out


def calibration_ladder(model: nn.Module, train: Images, heldout: Images | HeldOut, n: int, seed: int,
                       batch_size: int = 500) -> dict[str, float]:
    """The ladder at N = `n`: A a seeded n-subset of `train` (seed), the rungs made of a seeded
    n-subset of `heldout` (seed + 1), as the evaluate protocol draws its sets A and B. Either is
    uint8 images or a split's reader, of which only the 2n images drawn are read."""
    n_train, n_held = n_images(train), n_images(heldout)
    if not 2 <= n <= min(n_train, n_held):
        raise ValueError(f"ladder: n {n} must be in [2, {min(n_train, n_held)}]")
    a = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:n]
    b = torch.randperm(n_held, generator=torch.Generator().manual_seed(seed + 1))[:n]
    return ladder_against(model, extract(model, images_at(train, a), batch_size)[0], images_at(heldout, b),
                          batch_size)


def blur1_ratio(ladder: dict[str, float]) -> float:
    """How widely a ladder spreads: FID of 1-px-blurred held-out images over the real ones'."""
    return ladder[f"ladder_blur{BLUR_SIGMAS[0]}_ratio"]


def ladder_position(fid: float, ladder: dict[str, float]) -> str:
    """Where `fid` stands on `ladder`: 'at the real floor', 'between real and blur1', ...,
    'worse than blur4'."""
    names = [r.removeprefix("ladder_") for r in RUNGS]
    if fid <= ladder[REAL]:
        return "at the real floor"
    for lower, upper, rung in zip(names, names[1:], RUNGS[1:], strict=False):
        if fid <= ladder[rung]:
            return f"between {lower} and {upper}"
    return f"worse than {names[-1]}"
