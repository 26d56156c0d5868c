"""The evaluation classifier: a small CNN trained on the real data. Its penultimate layer is the
feature space for FID/KID/precision/recall (the "Fréchet LeNet distance" practice of TF-GAN,
used where Inception weights are unavailable); its logits give IS and class predictions.

`conv_body` is shared with the label-free rotation network (`ganmodel.networks.selfsup`), so both
feature networks measure images through the same architecture."""

from __future__ import annotations

import torch
from torch import nn

from ganmodel.networks import check_shape
from ganmodel.shapes import MNIST_SHAPE as DEFAULT_IMAGE_SHAPE  # files without a recorded shape

BASE_WIDTH = 16
MAX_WIDTH = 64
# Pool until the map's side is at most this: 28 -> 14 -> 7 (the original two-stage net), 32 -> 8,
# 64 -> 8, 256 -> 8. The flattened size then stays <= 64 * 8 * 8, whatever the resolution.
MAX_FINAL_SIDE = 8


def stage_plan(side: int) -> list[int]:
    """The width of each conv stage (two 3x3 conv blocks, then a 2x2 max-pool) for images of
    `side` pixels: 16, 32, 64, 64, ... until the side is at most `MAX_FINAL_SIDE`."""
    widths: list[int] = []
    while side > MAX_FINAL_SIDE:
        widths.append(min(BASE_WIDTH * 2 ** len(widths), MAX_WIDTH))
        side //= 2
    return widths


def final_side(side: int) -> int:
    """The side of the last feature map of `conv_body` for images of `side` pixels."""
    for _ in stage_plan(side):
        side //= 2
    return side


def conv_body(image_shape: tuple[int, int, int], feature_dim: int) -> nn.Sequential:
    """conv-conv-pool stages (`stage_plan`), flatten, dropout, fc(feature_dim), ReLU.

    Modules are created in this order, into one flat Sequential: at (1, 28, 28) the parameter
    names, shapes and initialisation (for a given seed) are exactly those of the original
    two-stage net, so its weights and every figure computed with them are unchanged."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    channels, side = image_shape[0], image_shape[-1]
    layers: list[nn.Module] = []
    cin = channels
    for w in stage_plan(side):
        layers += [*block(cin, w), *block(w, w), nn.MaxPool2d(2)]
        cin = w
    s = final_side(side)
    layers += [nn.Flatten(), nn.Dropout(0.25), nn.Linear(cin * s * s, feature_dim), nn.ReLU()]
    return nn.Sequential(*layers)


class EvalClassifier(nn.Module):
    """conv(w)-conv(w)-pool-conv(2w)-conv(2w)-pool[-...]-fc(feature_dim)-fc(n_classes), w=16.

    Small on purpose: it is trained in every `dvc repro` on a 2-core CPU, and a LeNet-sized
    net already separates MNIST/Fashion-MNIST classes well enough for a feature space. Larger
    images get more stages (`stage_plan`); at 28x28 it is the original two-stage net.

    Inputs are images in [-1, 1], [B, *image_shape]; `features` returns [B, feature_dim].
    """

    kind = "labelled"  # its name among the feature networks (`ganmodel.networks.featurenet`)

    def __init__(self, feature_dim: int = 128, n_classes: int = 10,
                 image_shape: tuple[int, int, int] = DEFAULT_IMAGE_SHAPE) -> None:
        super().__init__()
        self.feature_dim, self.n_classes = feature_dim, n_classes
        self.image_shape = tuple(int(v) for v in image_shape)
        self.body = conv_body(self.image_shape, feature_dim)  # type: ignore[arg-type]
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, self.image_shape, "EvalClassifier input")
        f = self.body(x)
        check_shape(f, (self.feature_dim,), "EvalClassifier features")
        return f

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the evaluation reads of every feature network: features [B, D], logits [B, C]."""
        f = self.features(x)
        return f, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
