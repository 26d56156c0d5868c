"""A sweep's results, for a person to act on: `results.csv` (one row per trial), `results.png` (the
metric against each swept key, trials stopped early drawn apart), `best.yaml` (the best trial's
`train` overrides) and the `dvc exp run -S ...` line that applies them to the pipeline, where the
evaluate stage and the register gate, not the sweep, decide what ships."""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

FINISHED, STOPPED, FAILED = "finished", "stopped_early", "failed"


@dataclass
class TrialResult:
    """What became of one trial (from Tune's verdict and the trial's MLflow history)."""

    index: int
    sampled: dict[str, Any]
    overrides: dict[str, Any]
    status: str  # FINISHED | STOPPED | FAILED
    fid: dict[int, float] = field(default_factory=dict)  # epoch -> quick FID
    run_id: str = ""
    tune_id: str = ""
    nodes: str = ""  # Ray node ids of the trial's ranks, comma-separated
    error: str = ""

    @property
    def epochs_run(self) -> int:
        return max(self.fid, default=0)

    @property
    def last_fid(self) -> float:
        return self.fid[self.epochs_run] if self.fid else math.nan

    @property
    def best_fid(self) -> float:
        return min(self.fid.values(), default=math.nan)


def best_trial(results: list[TrialResult]) -> TrialResult | None:
    """The finished trial with the lowest last FID: trials stopped early trained fewer epochs, so
    their FID is not comparable (and was worse when the scheduler stopped them)."""
    done = [r for r in results if r.status == FINISHED and not math.isnan(r.last_fid)]
    return min(done, key=lambda r: (r.last_fid, r.index)) if done else None


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def result_rows(results: list[TrialResult]) -> list[dict[str, Any]]:
    """results.csv: one row per trial, the swept keys as columns."""
    rows = []
    for r in sorted(results, key=lambda r: r.index):
        rows.append({"trial": r.index, "status": r.status, "stopped_early": r.status == STOPPED,
                     **{k: _cell(v) for k, v in r.sampled.items()},
                     "epochs_run": r.epochs_run, "last_fid": r.last_fid, "best_fid": r.best_fid,
                     "overrides": json.dumps(r.overrides, sort_keys=True), "mlflow_run_id": r.run_id,
                     "tune_trial_id": r.tune_id, "nodes": r.nodes, "error": r.error})
    return rows


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def results_png(results: list[TrialResult], space: dict[str, Any], path: str | os.PathLike[str],
                title: str) -> None:
    """The last quick FID against each swept key, one panel per key: finished trials as filled
    dots, trials stopped early as hollow grey circles (their FID is from fewer epochs), the best
    ringed; failed trials have no FID and are left out."""
    from ganmodel.figures import _plt

    plt = _plt()
    keys = list(space)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), dpi=100, squeeze=False)
    best = best_trial(results)
    scored = [r for r in results if not math.isnan(r.last_fid)]
    fids = [r.last_fid for r in scored if r.last_fid > 0]
    # An early-stopped trial's FID can be 50x the best's: on a linear axis the finished trials,
    # the ones worth comparing, would sit in one flat row at the bottom.
    log_fid = len(fids) == len(scored) and len(fids) > 1 and max(fids) / min(fids) >= 10
    for ax, key in zip(axes[0], keys, strict=True):
        values = [r.sampled[key] for r in scored]
        if _numeric(values):
            xs = values
            positive = [v for v in values if v > 0]
            if "loguniform" in space[key] or (len(positive) == len(values) and values
                                               and max(values) / min(values) >= 100):
                ax.set_xscale("log")  # learning rates and the like span decades
        else:  # choices that are no numbers (lists, names): one category each
            cats = sorted({_cell(v) for v in values})
            xs = [cats.index(_cell(v)) for v in values]
            ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right", fontsize=7)
        for status, style in ((FINISHED, dict(color="tab:blue", label="finished")),
                              (STOPPED, dict(facecolors="none", edgecolors="tab:gray",
                                             label="stopped early"))):
            pts = [(x, r.last_fid) for x, r in zip(xs, scored, strict=True) if r.status == status]
            if pts:
                ax.scatter(*zip(*pts, strict=True), s=36, **style)
        if best is not None and best in scored:
            x = xs[scored.index(best)]
            ax.scatter([x], [best.last_fid], s=160, facecolors="none", edgecolors="tab:red", label="best")
        ax.set_xlabel(key)
        ax.set_ylabel("quick FID at the trial's last epoch")
        if log_fid:
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def best_yaml(best: TrialResult, name: str, path: str | os.PathLike[str]) -> None:
    """best.yaml: the best trial's `train` overrides (a params.yaml fragment), with where it came from."""
    head = (f"# Sweep {name}: best trial {best.index}, quick FID {best.last_fid:.4g} after "
            f"{best.epochs_run} epochs (MLflow run {best.run_id}).\n"
            "# Apply with the `dvc exp run -S` line the sweep printed.\n")
    with open(path, "w") as f:
        f.write(head + yaml.safe_dump({"train": best.overrides}, sort_keys=False))


def set_args(overrides: dict[str, Any], present: Iterable[str]) -> list[str]:
    """`dvc exp run` arguments that set `overrides` in params.yaml's `train` section, whose keys are
    `present`. DVC reads -S with Hydra's override grammar: `train.k=v` changes a key params.yaml has
    (and is refused for one it lacks); `++train.k=v` adds or changes one, so a line for a key that is
    missing now still applies once the key has been written. Values are YAML flow style, which DVC
    parses back to the same values."""
    have = set(present)
    out = []
    for k, v in overrides.items():
        value = v if isinstance(v, str) else json.dumps(v)
        out += ["-S", f"{'' if k in have else '++'}train.{k}={value}"]
    return out


def dvc_command(overrides: dict[str, Any], present: Iterable[str], queue: bool = False) -> list[str]:
    """The `dvc exp run` command (argv) that runs the pipeline with `overrides` applied to a
    params.yaml whose `train` section has the keys `present`."""
    return ["dvc", "exp", "run", *(["--queue"] if queue else []), *set_args(overrides, present)]


def shell_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
