"""The search-space grammar of `sweep.space`: one distribution per `train` key, written as
`{choice: [...]}`, `{uniform: [lo, hi]}`, `{loguniform: [lo, hi]}` or `{randint: [lo, hi]}`.

Plain Python, no import of the params models or of `ganmodel.sweep`: `ganmodel.config` checks a
space with `check_space` while it validates params.yaml, which every stage does, so the sweep's
code (Ray Tune, trials, reports) stays out of the stages' dependencies. `ganmodel.sweep.space`
samples a checked space.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
# `train` keys a sweep sets itself (the value names where), or that say where and how robustly a
# run executes rather than what it trains: searching them would compare nothing.
NOT_SEARCHABLE = {
    "epochs": "sweep.epochs sets each trial's epochs",
    "num_workers": "sweep.workers_per_trial sets each trial's workers",
    "cpus_per_worker": "sweep.cpus_per_trial sets each trial's CPUs",
    "use_gpu": "sweep.use_gpu sets it for every trial",
    "max_failures": "sweep.max_failures sets the retries of a trial",
    "eval_every": "the sweep's metric is the quick FID of every epoch",
    "preset": "sweep the recipe keys instead (a trial then trains preset custom)",
    "ray_address": "it says where a run executes, not what it trains",
    "storage_path": "it says where a run executes, not what it trains",
    "checkpoint_every": "it says how a run is checkpointed, not what it trains",
    "keep_checkpoints": "it says how a run is checkpointed, not what it trains",
}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_one(key: str, spec: Any) -> None:
    example = "e.g. {{loguniform: [1.0e-4, 1.0e-2]}} or {{choice: [...]}}"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(f"space.{key}: expected one distribution ({', '.join(DISTRIBUTIONS)}), {example}")
    (kind, arg), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"space.{key}: unknown distribution {kind!r}; expected one of "
                         f"{', '.join(DISTRIBUTIONS)}")
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"space.{key}: choice expects a non-empty list of values, got {arg!r}")
        return
    if not isinstance(arg, list) or len(arg) != 2 or not all(map(_is_number, arg)):
        raise ValueError(f"space.{key}: {kind} expects two numbers [lo, hi], got {arg!r}")
    lo, hi = arg
    if not lo < hi:
        raise ValueError(f"space.{key}: {kind} expects lo < hi, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"space.{key}: loguniform expects 0 < lo, got [{lo}, {hi}]")
    if kind == "randint" and not all(isinstance(v, int) for v in arg):
        raise ValueError(f"space.{key}: randint expects two integers [lo, hi) (hi excluded), got {arg!r}")


def check_space(space: Mapping[str, Any], train_keys: Iterable[str]) -> None:
    """Raise `ValueError("space.<key>: ...")` for the first key that is no searchable `train` key or
    whose distribution is malformed. Whether the sampled values are valid train params is checked
    per sampled combination (`ganmodel.sweep.space.sample_trials`). An empty space passes here
    (params.yaml need not have a sweep); `ganmodel sweep` refuses it."""
    known = list(train_keys)
    for key, spec in space.items():
        if key not in known:
            raise ValueError(f"space.{key}: not a train key (expected some of: "
                             f"{', '.join(k for k in known if k not in NOT_SEARCHABLE)})")
        if key in NOT_SEARCHABLE:
            raise ValueError(f"space.{key}: not searchable: {NOT_SEARCHABLE[key]}")
        _check_one(key, spec)
