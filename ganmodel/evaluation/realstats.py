"""Features of a real split, computed once per process and shared by every metric that needs them.

Each stage computes the real features it uses (the evaluate stage for the train and held-out
splits, the train stage's rank 0 for the in-training FID): no cache outlives a process, so no
stage reads what another wrote behind DVC's back. Featurising is the cheap part here (about 1 s
for mnist5k, 10 s for Fashion-MNIST's 54k train images on 2 cores).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganmodel.evaluation.features import extract

# Real splits are always featurised in batches of this size, so their features, and every figure
# computed from them, do not depend on a stage's batch-size setting.
REAL_BATCH = 500


@dataclass(frozen=True)
class RealStats:
    features: torch.Tensor  # float64 [N, D]
    logits: torch.Tensor  # float64 [N, C]
    labels: torch.Tensor  # int64 [N]

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


def compute_stats(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  device: str | torch.device | None = None) -> RealStats:
    """Featurise real `images` (uint8 [N, C, H, W]) with their `labels` [N]."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels: expected shape [{images.shape[0]}], got {list(labels.shape)}")
    feats, logits = extract(model, images, REAL_BATCH, device)
    return RealStats(feats, logits, labels.detach().cpu().long())
