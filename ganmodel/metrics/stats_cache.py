"""Cache of real-data features, keyed by what they depend on: data, classifier, split and N.

Featurising a real split is the expensive part of an evaluation and its result is fixed for a
given (data hash, classifier weights hash, split, N), so it is computed once and stored as
`<cache_dir>/<key>.pt`. The raw features are kept (KID and precision/recall/density/coverage
need them), beside logits, labels, and mu/sigma for consumers that only want FID moments.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganmodel.errors import GanModelError, brief
from ganmodel.io import atomic_path, sha256_state_dict
from ganmodel.metrics.distances import feature_moments
from ganmodel.metrics.features import extract
from ganmodel.networks.classifier import EvalClassifier

FORMAT = 1  # bump when the stored layout changes, so old cache files miss instead of misleading


@dataclass(frozen=True)
class RealStats:
    features: torch.Tensor  # float64 [N, D]
    logits: torch.Tensor  # float64 [N, C]
    labels: torch.Tensor  # int64 [N]
    mu: torch.Tensor  # float64 [D]
    sigma: torch.Tensor  # float64 [D, D], unbiased
    meta: dict[str, str | int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


def classifier_hash(model: EvalClassifier) -> str:
    """sha256 of the classifier's weights and buffers (the features depend on nothing else)."""
    return sha256_state_dict(model.state_dict())


def cache_key(data_hash: str, classifier_hash: str, split: str, n: int) -> str:
    """`<split>-n<N>-<hash>`: readable, and different whenever any input differs."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", split):
        raise GanModelError(f"split: {split!r} is not a plain name (letters, digits, underscore)")
    blob = json.dumps({"data": data_hash, "classifier": classifier_hash, "split": split, "n": int(n),
                       "format": FORMAT}, sort_keys=True)
    return f"{split}-n{int(n)}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def compute_stats(model: EvalClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                  device: str | torch.device | None = None,
                  meta: dict[str, str | int] | None = None) -> RealStats:
    """Featurise real `images` (uint8 [N, 1, 28, 28]) with their `labels` [N]."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels: expected shape [{images.shape[0]}], got {list(labels.shape)}")
    feats, logits = extract(model, images, batch_size, device)
    mu, sigma = feature_moments(feats)
    return RealStats(feats, logits, labels.detach().cpu().long(), mu, sigma, dict(meta or {}))


def save_stats(path: str | os.PathLike[str], stats: RealStats) -> None:
    """Write `stats` as a dict of tensors (plus string/int meta), atomically."""
    obj = {"format": FORMAT, "features": stats.features, "logits": stats.logits, "labels": stats.labels,
           "mu": stats.mu, "sigma": stats.sigma, "meta": dict(stats.meta)}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_stats(path: str | os.PathLike[str]) -> RealStats:
    """Load a stats file written by `save_stats` (weights_only), checking its layout."""
    p = Path(path)
    if not p.is_file():
        raise GanModelError(f"{p}: real-feature stats file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
        if obj.get("format") != FORMAT:
            raise ValueError(f"format {obj.get('format')!r}, expected {FORMAT}")
        stats = RealStats(obj["features"], obj["logits"], obj["labels"], obj["mu"], obj["sigma"],
                          dict(obj["meta"]))
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise GanModelError(f"{p}: not a ganmodel real-feature stats file ({brief(err)})") from None
    n, d = stats.features.shape if stats.features.ndim == 2 else (-1, -1)
    if (n < 0 or stats.logits.shape[:1] != (n,) or stats.labels.shape != (n,)
            or stats.mu.shape != (d,) or stats.sigma.shape != (d, d)):
        raise GanModelError(f"{p}: inconsistent shapes in real-feature stats file")
    return stats


def cached_stats(cache_dir: str | os.PathLike[str], model: EvalClassifier, images: torch.Tensor,
                 labels: torch.Tensor, data_hash: str, split: str, batch_size: int,
                 device: str | torch.device | None = None) -> tuple[RealStats, Path]:
    """Stats of a real split from `<cache_dir>/<key>.pt`, computing and saving them on a miss."""
    chash = classifier_hash(model)
    key = cache_key(data_hash, chash, split, images.shape[0])
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        return load_stats(path), path
    meta = {"data_hash": data_hash, "classifier_hash": chash, "split": split, "n": int(images.shape[0])}
    stats = compute_stats(model, images, labels, batch_size, device, meta)
    save_stats(path, stats)
    return stats, path
