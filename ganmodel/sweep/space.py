"""The trials of a sweep, sampled and validated before any runs.

`sample_trials` draws `sweep.num_samples` combinations from `sweep.space` with a seeded numpy
generator, and checks each twice through the one params model (`parse_params`): as the pipeline
would train it (params.yaml with the trial's overrides; what `best.yaml` and the printed
`dvc exp run -S` line apply) and as the trial trains it (plus the sweep's epochs, workers,
resources and per-epoch quick FID). Ray Tune then gets exactly this list, so nothing unvalidated
ever runs and a trial trains exactly what its overrides say.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ganmodel.config import RECIPE_KEYS, Params, SweepParams, TrainParams, parse_params
from ganmodel.errors import GanModelError


@dataclass(frozen=True)
class Trial:
    """One sampled configuration, as plain data (it travels to the trial's Ray actor)."""

    index: int
    sampled: dict[str, Any]  # the values drawn from the space
    overrides: dict[str, Any]  # train keys that apply it to params.yaml (best.yaml, dvc exp run -S)
    train: dict[str, Any]  # the trial's resolved `train` section (JSON-ready), sweep settings included

    def label(self) -> str:
        """`lr_g=0.001, augment=['translation']`: the sampled values, for messages and plots."""
        return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={json.dumps(v)}"
                         for k, v in self.sampled.items())


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def overrides_for(sampled: dict[str, Any], base: TrainParams) -> dict[str, Any]:
    """The `train` keys that set `sampled` on top of params.yaml's `train` section.

    A recipe key next to a named preset is an error in params.yaml (ganmodel.config's preset rule), so a
    combination that changes a recipe key trains `preset: custom` with the base preset's resolved
    recipe keys (those that differ from the field defaults) and the sampled values on top."""
    if base.preset == "custom" or not any(k in RECIPE_KEYS for k in sampled):
        return dict(sampled)
    recipe = {k: _json(getattr(base, k)) for k in RECIPE_KEYS
              if getattr(base, k) != TrainParams.model_fields[k].default}
    return {"preset": "custom", **recipe, **sampled}


def _sweep_settings(sweep: SweepParams) -> dict[str, Any]:
    """What every trial trains with, whatever params.yaml says (see `search_space.NOT_SEARCHABLE`)."""
    return {"epochs": sweep.epochs, "num_workers": sweep.workers_per_trial,
            "cpus_per_worker": sweep.cpus_per_trial, "use_gpu": sweep.use_gpu, "eval_every": 1,
            "max_failures": 0}  # Tune retries a failed trial (sweep.max_failures)


def _readable(x: float) -> float:
    """Four significant digits: what a trial trains is what its params, results.csv and the
    `dvc exp run -S` line print, to the letter."""
    return float(f"{x:.4g}")


def sample(spec: Mapping[str, Any], rng: np.random.Generator) -> Any:
    """One value of a checked distribution (`randint` excludes hi, like numpy and Ray Tune)."""
    (kind, arg), = spec.items()
    if kind == "choice":
        return arg[int(rng.integers(len(arg)))]
    if kind == "randint":
        return int(rng.integers(arg[0], arg[1]))
    if kind == "uniform":
        return _readable(rng.uniform(arg[0], arg[1]))
    return _readable(math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]))))


def with_train(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw params mapping with `overrides` applied to its `train` section."""
    out = copy.deepcopy(raw)
    out["train"] = {**(out.get("train") or {}), **overrides}
    return out


def _validated(raw: dict[str, Any], source: str, what: str) -> Params:
    try:
        return parse_params(raw, source)
    except GanModelError as err:
        detail = str(err).removeprefix(f"{source}: ")
        raise GanModelError(f"{source}: sweep.space: {what} fails validation: {detail}") from None


def sample_trials(raw: dict[str, Any], source: str = "params.yaml") -> list[Trial]:
    """`sweep.num_samples` trials drawn from `sweep.space` (numpy, seeded by `sweep.seed`), each
    validated as the pipeline and as the trial would train it; a one-line error names the first
    combination that fails and the train key it fails on."""
    params = parse_params(raw, source)
    sweep = params.sweep
    if not sweep.space:
        raise GanModelError(f"{source}: sweep.space: is empty; give train keys and their distributions, "
                            "e.g. lr_g: {loguniform: [1.0e-4, 1.0e-2]}")
    rng = np.random.default_rng(sweep.seed)
    trials = []
    for index in range(sweep.num_samples):
        sampled = {key: sample(spec, rng) for key, spec in sweep.space.items()}
        overrides = overrides_for(sampled, params.train)
        trial = Trial(index, sampled, overrides, {})
        what = f"trial {index} ({trial.label()})"
        _validated(with_train(raw, overrides), source, what)
        resolved = _validated(with_train(raw, {**overrides, **_sweep_settings(sweep)}), source,
                              f"{what} with the sweep's settings")
        trials.append(Trial(index, sampled, overrides, resolved.train.model_dump(mode="json")))
    return trials
