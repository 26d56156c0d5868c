"""Typed params: one model per `params.yaml` section, loaded and validated here and nowhere else.

Every stage calls `load_params`, so an unknown key, a wrong type, an out-of-range value or an
impossible combination stops the stage before any work, with a one-line error naming the key.

The package: `base` (the section base model and shared checks), `presets` (the named training
recipes), `sections` (one model per section); here, `Params` (the whole file, with the checks
across sections), loading, and the names every caller imports from `ganmodel.config`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from ganmodel.config.base import _Section
from ganmodel.config.presets import DEFAULT_PRESET, PRESETS, RECIPE_KEYS, SEED_PRESET
from ganmodel.config.sections import (
    DATASETS,
    ClassifierParams,
    DataParams,
    EvaluateParams,
    RegisterParams,
    SweepParams,
    TrackingParams,
    TrainParams,
)
from ganmodel.errors import GanModelError
from ganmodel.shapes import recipe_shape_error

__all__ = [
    "DATASETS", "DEFAULT_PRESET", "PRESETS", "RECIPE_KEYS", "SEED_PRESET", "ClassifierParams", "DataParams",
    "EvaluateParams", "Params", "RegisterParams", "SweepParams", "TrackingParams", "TrainParams",
    "load_params", "min_classifier_accuracy", "parse_params", "read_params",
]


with warnings.catch_warnings():
    # `register` is a section name users know; pydantic warns that it shadows ABC.register.
    warnings.simplefilter("ignore")

    class Params(_Section):
        """The whole `params.yaml`."""

        data: DataParams = DataParams()
        classifier: ClassifierParams = ClassifierParams()
        train: TrainParams = TrainParams()
        evaluate: EvaluateParams = EvaluateParams()
        register: RegisterParams = RegisterParams()
        tracking: TrackingParams = TrackingParams()
        sweep: SweepParams = SweepParams()

        @model_validator(mode="after")
        def _check(self) -> Params:
            d = self.data
            shape = (d.image_channels, d.image_resolution, d.image_resolution)
            if (error := recipe_shape_error(self.train.preset, self.train.arch, PRESETS, shape,
                                             default=DEFAULT_PRESET)) is not None:
                raise ValueError(error)
            return self


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model validated at `loc`: `Params` at the top, a section model one level down."""
    if not loc:
        return Params
    if len(loc) == 1 and loc[0] in Params.model_fields:
        return Params.model_fields[loc[0]].annotation  # type: ignore[return-value]
    return None


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        section = first["loc"][0] if len(first["loc"]) > 1 else None
        model = Params.model_fields[section].annotation if section in Params.model_fields else Params
        allowed = ", ".join(model.model_fields)  # type: ignore[union-attr]
        return f"{source}: {loc}: unknown key (expected one of: {allowed})"
    msg = first["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        # Section-level checks (combinations) start their message with the offending key:
        # report it as `section.key`, like every other error.
        model = _model_at(first["loc"])
        key, sep, rest = msg.partition(": ")
        # A key may be dotted below a field (`space.lr_g: ...` from the sweep section).
        if model is not None and sep and key.partition(".")[0] in model.model_fields:
            return f"{source}: {'.'.join([*map(str, first['loc']), key])}: {rest}"
    if "input" in first and kind not in ("missing",) and not isinstance(first["input"], dict):
        return f"{source}: {loc}: {msg} (got {first['input']!r})"
    return f"{source}: {loc}: {msg}"


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise `GanModelError` with a one-line message naming the key."""
    if not isinstance(raw, dict):
        raise GanModelError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise GanModelError(_format_error(err, source)) from None


def read_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """The params file as written (unvalidated): what command-line overrides are applied to."""
    p = Path(path)
    if not p.is_file():
        raise GanModelError(f"{p}: params file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise GanModelError(f"{p}: not valid YAML ({str(err).splitlines()[0]})") from None
    return raw


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate `params.yaml`."""
    return parse_params(read_params(path), str(path))


def min_classifier_accuracy(params: Params, n_classes: int | None = None) -> float:
    """The accuracy floor the classifier stage enforces (issue: 97% MNIST, 90% Fashion-MNIST).

    A folder of `n_classes` classes: twice chance, capped halfway between chance and perfect,
    i.e. min(2 / n, (1 + 1 / n) / 2): 0.75 for 2 classes, 0.2 for 10, 0.09 for 22. Folder labels
    are often weak (a folder per tag of a diverse clip-art set scores ~0.45 over 22 classes): the
    floor only asks that the classifier learned the labels at all."""
    if params.classifier.min_accuracy is not None:
        return params.classifier.min_accuracy
    if params.data.dataset == "folder":
        n = max(int(n_classes or 2), 2)
        return round(min(2 / n, (1 + 1 / n) / 2), 4)
    return 0.90 if params.data.dataset == "fashion_mnist" else 0.97
