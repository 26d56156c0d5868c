"""A label-free feature network: self-supervised rotation prediction (Gidaris, Singh & Komodakis
2018, "Unsupervised Representation Learning by Predicting Image Rotations", sec. 2): the
evaluation classifier's CNN body (`conv_body`) with a 4-way head that tells which of 0, 90, 180
or 270 degrees an image was rotated by. To answer, the body has to recognise what the objects are
and how they are oriented, so its penultimate layer is a feature space for data without labels (a
flat folder), where no classifier can be trained."""

from __future__ import annotations

import torch
from torch import nn

from ganmodel.networks import check_shape
from ganmodel.networks.classifier import DEFAULT_IMAGE_SHAPE, conv_body

N_ROTATIONS = 4  # 0, 90, 180, 270 degrees: exact on the pixel grid (the paper's choice)
ROTATION_NAMES = ("0°", "90°", "180°", "270°")


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of `x` [B, C, H, W] (square) in each of the four rotations, [4B, C, H, W], and
    the rotation index of each row [4B] (Gidaris et al. 2018 feed all four in one batch)."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotations: images must be square, got {list(x.shape)}")
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(N_ROTATIONS)])
    labels = torch.arange(N_ROTATIONS).repeat_interleave(x.shape[0]).to(x.device)
    return rotated, labels


class RotationNet(nn.Module):
    """`conv_body` + Dropout + fc(4): predicts an image's rotation. No class head (`n_classes` 0):
    evaluated with it, the metrics that need classes are skipped."""

    kind = "label_free"
    n_classes = 0

    def __init__(self, feature_dim: int = 128,
                 image_shape: tuple[int, int, int] = DEFAULT_IMAGE_SHAPE) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.image_shape = tuple(int(v) for v in image_shape)
        self.body = conv_body(self.image_shape, feature_dim)  # type: ignore[arg-type]
        self.rotation_head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, N_ROTATIONS))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, self.image_shape, "RotationNet input")
        return self.body(x)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B, D] and class logits [B, 0]: it knows no classes."""
        f = self.features(x)
        return f, f.new_zeros(f.shape[0], 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotation logits [B, 4]."""
        return self.rotation_head(self.features(x))
