"""Shared fixtures: quiet third-party defaults, the repo root, tiny training configs and data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

# Before anything imports mlflow/dvc/ray: no telemetry, no analytics, no update checks.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def train_cfg() -> Callable[..., object]:
    """Factory for a tiny, valid `TrainParams` (one worker, CPU); keyword overrides win."""
    from ganmodel.config import TrainParams

    def make(**overrides: object) -> TrainParams:
        base = dict(preset="custom", arch="mlp", loss="bce", epochs=2, steps_per_epoch=3, batch_size=64,
                    num_workers=1,
                    lr_g=2e-4, lr_d=2e-4, z_dim=100, seed=0)
        base.update(overrides)
        return TrainParams(**base)

    return make


@pytest.fixture(scope="session")
def random_images() -> torch.Tensor:
    """512 random uint8 images [N, 1, 28, 28] (seeded)."""
    rng = np.random.default_rng(123)
    return torch.from_numpy(rng.integers(0, 256, size=(512, 1, 28, 28), dtype=np.uint8))


@pytest.fixture
def write_mnist_raw() -> Callable[..., dict[str, np.ndarray]]:
    """Write tiny MNIST-format IDX files (torchvision names) and return what was written.

    `layout="flat"` puts them in `raw_dir`, `layout="torchvision"` in `raw_dir/<folder>/raw/`.
    """
    from ganmodel.data.idx import write_idx

    def write(raw_dir: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, layout: str = "flat",
              folder: str = "MNIST", seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        arrays = {
            "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
            "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test, dtype=np.uint8),
        }
        target = Path(raw_dir) if layout == "flat" else Path(raw_dir) / folder / "raw"
        target.mkdir(parents=True, exist_ok=True)
        for stem, arr in arrays.items():
            write_idx(target / (stem + (".gz" if gz else "")), arr)
        return arrays

    return write


@pytest.fixture(scope="session")
def mnist5k() -> dict[str, object]:
    """The embedded mnist5k digits, split as the prepare stage does (train 4000, val 500, test 500)."""
    from ganmodel.data.sources import load_mnist5k
    from ganmodel.data.splits import make_splits

    return make_splits(load_mnist5k("unused", False), 0.1, 0.1, seed=0)


@pytest.fixture(scope="session")
def digit_classifier(mnist5k):
    """A feature network for learning tests: the evaluation classifier's architecture trained on
    the mnist5k train split for a few epochs (~97% on test), seed 1, not the pipeline's."""
    import torch

    from ganmodel.classifier.training import train_classifier
    from ganmodel.config import ClassifierParams

    torch.set_num_threads(max(1, torch.get_num_threads()))
    res = train_classifier(ClassifierParams(epochs=4, seed=1), mnist5k["train"], mnist5k["val"],
                           mnist5k["test"], 10, log=lambda _m: None)
    assert res.test_accuracy > 0.95, res.test_accuracy
    return res.model.eval()


@pytest.fixture(scope="session")
def conditional_generator_file(mnist5k, tmp_path_factory) -> Path:
    """A conditional conv generator trained 900 seeded steps on mnist5k (the conv_sn_cond recipe),
    saved as the train stage saves one (for the learning, CLI and serving tests that ask it for
    classes)."""
    from ganmodel.artifacts import save_generator
    from ganmodel.config import TrainParams
    from ganmodel.training.job import run_local
    from ganmodel.training.outputs import generator_meta

    cfg = TrainParams(preset="conv_sn_cond", epochs=15, steps_per_epoch=60, num_workers=1, seed=0)
    train = mnist5k["train"]
    out = run_local(cfg, train.images, labels=train.labels, n_classes=10)
    path = tmp_path_factory.mktemp("conditional") / "generator.pt"
    data = {"dataset": "mnist5k", "data_hash": "d" * 64, "classes": [str(c) for c in range(10)]}
    meta = generator_meta(cfg, data)
    save_generator(out.generator, meta, path)
    return path
