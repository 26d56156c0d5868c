"""The generator as an MLflow pyfunc model: latent vectors in, images out.

Contract (also the logged signature):

- input: float32 tensor `[-1, z_dim]`, one latent vector per row (a 2-D numpy array, a DataFrame
  of `z_dim` numeric columns, a torch tensor or nested lists). Over REST:
  `{"inputs": [[z_0, ..., z_{z_dim-1}], ...]}`.
- optional param `labels` (one int in `[0, n_classes)` per row) for a conditional generator: row
  i is an image of class `labels[i]`. Without it a conditional generator makes its classes in
  turn, in equal runs (`0 1 2 ...` for fewer rows than classes). An unconditional generator
  refuses labels. Over REST: `{"inputs": ..., "params": {"labels": [3, 7]}}`.
- output: float32 array `[-1, C, H, W]` in the generator's tanh range **[-1, 1]**
  (`(x + 1) / 2` gives [0, 1] pixel intensities); `(C, H, W)` is the generator's image shape, from
  its file's meta (`image_shape`: C 1 greyscale or 3 RGB; files from before colour: (1, 28, 28)).
  The logged signature and the MLmodel metadata (`image_shape`) state it.

Bad input (wrong width, NaN/inf, non-numeric, too many rows, bad or unwanted labels) raises an
`MlflowException` with `INVALID_PARAMETER_VALUE`, so `mlflow models serve` answers 400, not 500.

The model is logged as code (MLflow's models-from-code: `model_code.py` is the `python_model`),
so loading it runs that file and never unpickles an object. The model directory holds the raw
generator file (`artifacts/generator.pt`, the `ganmodel.artifacts` format, loaded with
`weights_only=True`) and the few `ganmodel` modules serving imports (`SERVING_MODULES`): torch,
numpy and mlflow are its only requirements.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from ganmodel.errors import GanModelError, brief

# What generator files written before `image_shape` was recorded make (MNIST's shape).
from ganmodel.shapes import MNIST_SHAPE as LEGACY_IMAGE_SHAPE

ARTIFACT_KEY = "generator"
WEIGHTS_FILE = "generator.pt"
# Where the weights file sits inside a logged model directory.
WEIGHTS_IN_MODEL = f"artifacts/{WEIGHTS_FILE}"
MAX_ROWS = 10_000


def _bad(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def to_latents(model_input: Any, z_dim: int) -> np.ndarray:
    """Validate `model_input` as latent vectors; return a float32 array [n, z_dim]."""
    if isinstance(model_input, dict):
        # Named-tensor input: accept a single tensor under any name.
        if len(model_input) != 1:
            raise _bad(f"expected one latent tensor [n, {z_dim}], got inputs {sorted(model_input)}")
        model_input = next(iter(model_input.values()))
    if hasattr(model_input, "detach"):  # torch tensor
        model_input = model_input.detach().cpu().numpy()
    elif hasattr(model_input, "to_numpy"):  # pandas DataFrame
        model_input = model_input.to_numpy()
    try:
        arr = np.asarray(model_input)
    except (ValueError, TypeError) as err:
        raise _bad(f"latent vectors must be a 2-D numeric array [n, {z_dim}] ({brief(err)})") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError):
            raise _bad(f"latent vectors must be numbers, expected [n, {z_dim}]") from None
    if arr.dtype.kind not in "biuf":
        raise _bad(f"latent vectors must be numbers, got dtype {arr.dtype}; expected [n, {z_dim}]")
    if arr.ndim == 1 and arr.shape[0] == z_dim:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != z_dim:
        raise _bad(f"latent vectors must have shape [n, {z_dim}], got {list(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[0] > MAX_ROWS:
        raise _bad(f"expected 1 to {MAX_ROWS} latent vectors per request, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise _bad("latent vectors contain NaN or infinite values")
    return arr.astype(np.float32, copy=False)


def to_labels(labels: Any, n: int, n_classes: int) -> np.ndarray | None:
    """Validate the optional class labels of `n` rows for a generator of `n_classes` classes
    (0: unconditional, which takes none); None when none were sent."""
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.size == 0:
        return None
    if n_classes == 0:
        raise _bad("labels: this generator is unconditional and takes no labels")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise _bad(f"labels: expected one label per latent vector ({n}), got shape {list(arr.shape)}")
    if arr.dtype.kind not in "iu":
        raise _bad(f"labels: expected integers, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_classes:
        raise _bad(f"labels: expected integers in [0, {n_classes}), got {arr.min()}..{arr.max()}")
    return arr.astype(np.int64)


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around a generator file; see the module docstring for the contract."""

    # The signature is explicit (TensorSpec): skip MLflow's type-hint wrapping of `predict` and
    # its "add type hints" warning. Validation happens in `to_latents`.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from ganmodel.artifacts import load_generator

        self.generator, self.meta = load_generator(context.artifacts[ARTIFACT_KEY])
        self.z_dim = int(self.meta["z_dim"])
        self.image_shape = image_shape(self.meta)
        self.n_classes = int(getattr(self.generator, "n_classes", 0))

    # No type hints on predict: MLflow would try to derive a signature from them.
    def predict(self, context, model_input, params=None):
        import torch

        from ganmodel.networks import class_rows

        z = torch.from_numpy(np.ascontiguousarray(to_latents(model_input, self.z_dim)))
        labels = to_labels((params or {}).get("labels"), z.shape[0], self.n_classes)
        with torch.no_grad():
            if self.n_classes == 0:
                out = self.generator(z)
            else:
                y = torch.from_numpy(labels) if labels is not None else class_rows(
                    z.shape[0], list(range(self.n_classes)))
                out = self.generator(z, y)
        return out.float().clamp_(-1.0, 1.0).cpu().numpy()


def image_shape(meta: dict[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) of a generator's images, from its file's meta."""
    shape = tuple(int(d) for d in meta.get("image_shape") or LEGACY_IMAGE_SHAPE)
    if len(shape) != 3:
        raise GanModelError(f"generator meta: image_shape must be [C, H, W], got {list(shape)}")
    return shape  # type: ignore[return-value]


def signature(z_dim: int, shape: tuple[int, int, int]) -> Any:
    """Latents [-1, z_dim] float32 in, images [-1, C, H, W] float32 out (`shape`), optional `labels`."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, z_dim))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape))]),
        params=ParamSchema([ParamSpec("labels", "long", [], shape=(-1,))]),
    )


def pip_requirements() -> list[str]:
    """Pinned to what is installed: passing them skips MLflow's slow requirement inference."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "numpy")]


# What the served model imports of ganmodel, relative to the package: copied into the model as its
# code, nothing else (a module missing here fails `mlflow models serve` at load, in the tests).
SERVING_MODULES = ("__init__.py", "errors.py", "io.py", "artifacts.py", "networks", "shapes.py",
                   "registry/__init__.py", "registry/serving.py")
MODEL_CODE = Path(__file__).with_name("model_code.py")


def serving_package(dest: str | os.PathLike[str]) -> str:
    """Copy `SERVING_MODULES` into `dest/ganmodel`; returns that directory (a `code_paths` entry)."""
    src = Path(__file__).resolve().parents[1]
    out = Path(dest) / "ganmodel"
    for rel in SERVING_MODULES:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (src / rel).is_dir():
            shutil.copytree(src / rel, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src / rel, target)
    return str(out)


def model_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """What the MLmodel file says about the generator."""
    return {"z_dim": int(meta["z_dim"]), "arch": meta.get("arch"), "output_range": "[-1, 1]",
            "image_shape": list(image_shape(meta)), "conditional": bool(meta.get("conditional", False)),
            "n_classes": int(meta.get("n_classes", 0)), "classes": list(meta.get("classes") or [])}


def input_example(z_dim: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, z_dim)).astype(np.float32)
