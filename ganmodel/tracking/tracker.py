"""The tracker seen by the training loop, and its MLflow adapter.

The loop only calls `Tracker` methods; rank 0 gets an `MlflowTracker`, other ranks a `NullTracker`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch

# Per-epoch sheets are logged every epoch: 64 images of 128 px colour would be ~1 MP a sheet, so
# bigger tiles are averaged down to this side (28 px MNIST sheets are untouched).
SHEET_MAX_TILE = 64


class Tracker(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_image(self, images: torch.Tensor, artifact_file: str, nrow: int | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_file(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None: ...


class NullTracker:
    """Logs nothing: for ranks other than 0, tests and benchmarks."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_image(self, images: torch.Tensor, artifact_file: str, nrow: int | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_file(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        pass


class MlflowTracker:
    """Logs into an existing MLflow run by id (safe from a Ray worker: no global active run)."""

    def __init__(self, run_id: str, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.run_id = run_id
        self.client = MlflowClient(tracking_uri)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):
            self.client.log_batch(self.run_id, params=batch[i : i + 100], synchronous=True)

    def log_image(self, images: torch.Tensor, artifact_file: str, nrow: int | None = None) -> None:
        """A sample grid PNG of `images` [B, C, H, W] (greyscale or RGB), `nrow` per row (default:
        a square); tiles over `SHEET_MAX_TILE` px are shrunk to fit."""
        from ganmodel.figures import save_grid

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / Path(artifact_file).name
            save_grid(images, p, nrow=nrow, max_tile=SHEET_MAX_TILE)
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(self.run_id, str(p), None if parent == "." else parent)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=batch, synchronous=True)

    def log_file(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)
