"""The feature networks the evaluation measures images with, by name (`classifier.feature_network`):

- `labelled`: the evaluation classifier (`EvalClassifier`), its penultimate layer and its logits;
- `label_free`: the rotation network's penultimate layer (`RotationNet`, Gidaris et al. 2018);
- `both`: the two concatenated, each standardised.

Every one has `feature_dim`, `n_classes` (0: no class head, so no class figures), `image_shape`,
`kind` and `features_and_logits(x) -> (features [B, D], logits [B, n_classes])`. A stack
(`label_free` or `both` on labelled data) carries the labelled classifier for its logits only, so
the class figures (IS, classes covered, conditional accuracy) mean the same whichever features
are shipped. `network_meta` and `build_feature_network` turn one into the meta of its file and back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ganmodel.networks.classifier import DEFAULT_IMAGE_SHAPE, EvalClassifier
from ganmodel.networks.selfsup import RotationNet

KINDS = ("labelled", "label_free", "both")


class FeatureStack(nn.Module):
    """The rotation network's features (`label_free`), or those and the classifier's, each
    standardised, concatenated (`both`); class logits from `classifier` when there is one.

    Standardised: minus the mean feature of real train images, divided by one scalar per network,
    the root mean variance of its features. A scalar, not a per-unit scale: it only balances the
    two networks' shares of the distance, and leaves each network's geometry as it was (a per-unit
    scale would blow up near-constant ReLU units into noise). Set by `standardise`."""

    def __init__(self, kind: str, rotation: RotationNet, classifier: EvalClassifier | None = None) -> None:
        super().__init__()
        if kind not in ("label_free", "both"):
            raise ValueError(f"FeatureStack kind: expected label_free or both, got {kind!r}")
        if kind == "both" and classifier is None:
            raise ValueError("FeatureStack both: needs the labelled classifier")
        if classifier is not None and classifier.image_shape != rotation.image_shape:
            raise ValueError(f"FeatureStack: image shapes differ ({classifier.image_shape} vs "
                             f"{rotation.image_shape})")
        self.kind, self.rotation, self.classifier = kind, rotation, classifier
        self.image_shape = rotation.image_shape
        self.n_classes = classifier.n_classes if classifier is not None else 0
        self.feature_dim = rotation.feature_dim + (classifier.feature_dim if kind == "both" else 0)
        # Identity until `standardise`: zero means, unit scales (buffers, so they are in the file).
        self.register_buffer("rotation_mean", torch.zeros(rotation.feature_dim))
        self.register_buffer("rotation_scale", torch.ones(()))
        dim = classifier.feature_dim if classifier is not None else 0
        self.register_buffer("classifier_mean", torch.zeros(dim))
        self.register_buffer("classifier_scale", torch.ones(()))

    @torch.no_grad()
    def standardise(self, x: torch.Tensor) -> None:
        """Fit the means and scales on real images `x` (float [N, C, H, W] in [-1, 1])."""
        was = self.training
        self.eval()
        try:
            for net, mean, scale in self._parts():
                f = net.features(x).double()
                mean.copy_(f.mean(0))
                scale.copy_(f.var(0).mean().sqrt().clamp(min=1e-12))
        finally:
            self.train(was)

    def _parts(self) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        parts = [(self.rotation, self.rotation_mean, self.rotation_scale)]
        if self.kind == "both":
            parts.append((self.classifier, self.classifier_mean, self.classifier_scale))
        return parts

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f_rot = self.rotation.features(x)
        f_clf = self.classifier.features(x) if self.classifier is not None else None
        if self.kind == "both":
            feats = torch.cat([(f_rot - self.rotation_mean) / self.rotation_scale,
                               (f_clf - self.classifier_mean) / self.classifier_scale], dim=1)
        else:
            feats = (f_rot - self.rotation_mean) / self.rotation_scale
        logits = (self.classifier.logits_from_features(f_clf) if f_clf is not None
                  else f_rot.new_zeros(f_rot.shape[0], 0))
        return feats.to(f_rot.dtype), logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def network_meta(model: nn.Module) -> dict[str, Any]:
    """What rebuilds `model` (the architecture, not the weights): the meta of its file."""
    meta: dict[str, Any] = {"feature_network": model.kind, "feature_dim": model.feature_dim,
                            "n_classes": model.n_classes, "image_shape": list(model.image_shape)}
    if isinstance(model, FeatureStack):
        meta["rotation_dim"] = model.rotation.feature_dim
        if model.classifier is not None:
            meta["classifier_dim"] = model.classifier.feature_dim
    return meta


def _shape(meta: dict[str, Any]) -> tuple[int, int, int]:
    # Files written before the shape was recorded are the built-in datasets' 28x28 greyscale.
    return tuple(int(v) for v in meta.get("image_shape", DEFAULT_IMAGE_SHAPE))  # type: ignore[return-value]


def _labelled(meta: dict[str, Any]) -> nn.Module:
    return EvalClassifier(int(meta["feature_dim"]), int(meta["n_classes"]), _shape(meta))


def _stack(meta: dict[str, Any]) -> nn.Module:
    shape = _shape(meta)
    rotation = RotationNet(int(meta["rotation_dim"]), shape)
    classifier = (EvalClassifier(int(meta["classifier_dim"]), int(meta["n_classes"]), shape)
                  if meta.get("classifier_dim") is not None else None)
    return FeatureStack(str(meta["feature_network"]), rotation, classifier)


FEATURE_NETWORKS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "labelled": _labelled, "label_free": _stack, "both": _stack}


def build_feature_network(meta: dict[str, Any]) -> nn.Module:
    """An untrained feature network of the architecture `meta` describes (`network_meta`); files
    without `feature_network` hold the labelled classifier (all files before it was recorded)."""
    kind = meta.get("feature_network", "labelled")
    if kind not in FEATURE_NETWORKS:
        raise ValueError(f"feature_network: unknown {kind!r}; expected one of {sorted(FEATURE_NETWORKS)}")
    return FEATURE_NETWORKS[kind](meta)
