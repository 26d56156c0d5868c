"""The evaluation classifier: a small CNN trained on the real data. Its penultimate layer is the
feature space for FID/KID/precision/recall (the "Fréchet LeNet distance" practice of TF-GAN,
used where Inception weights are unavailable); its logits give IS and class predictions."""

from __future__ import annotations

import torch
from torch import nn

from ganmodel.networks import check_shape
from ganmodel.shapes import MNIST_SHAPE as IMAGE_SHAPE  # this classifier reads 1x28x28 only


class EvalClassifier(nn.Module):
    """conv(w)-conv(w)-pool-conv(2w)-conv(2w)-pool-fc(feature_dim)-fc(n_classes), w=16.

    Small on purpose: it is trained in every `dvc repro` on a 2-core CPU, and a LeNet-sized
    net already separates MNIST/Fashion-MNIST classes well enough for a feature space.

    Inputs are images in [-1, 1], [B, 1, 28, 28]; `features` returns [B, feature_dim].
    """

    def __init__(self, feature_dim: int = 128, n_classes: int = 10) -> None:
        super().__init__()
        self.feature_dim, self.n_classes = feature_dim, n_classes
        w = 16

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, w), *block(w, w), nn.MaxPool2d(2),  # 14x14
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(2 * w * 7 * 7, feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, IMAGE_SHAPE, "EvalClassifier input")
        f = self.body(x)
        check_shape(f, (self.feature_dim,), "EvalClassifier features")
        return f

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
