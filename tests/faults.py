"""Faults for the resume tests, injected through the train workers' epoch hooks: run a stage with
`GANMODEL_EPOCH_HOOKS=faults:fail_once` (or `faults:pause_once`) and this directory on PYTHONPATH.
Each fires once, on rank 0, after the report of epoch `GANMODEL_FAULT_AT_EPOCH`, and writes
`GANMODEL_FAULT_MARKER` first, so a retried worker group (or a re-run) does not fire it again."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _due(epoch: int, rank: int) -> Path | None:
    marker = Path(os.environ["GANMODEL_FAULT_MARKER"])
    if rank != 0 or epoch != int(os.environ["GANMODEL_FAULT_AT_EPOCH"]) or marker.exists():
        return None
    return marker


def fail_once(epoch: int, rank: int) -> None:
    """Rank 0 raises: a worker failure that Ray Train's FailureConfig retries."""
    if (marker := _due(epoch, rank)) is not None:
        marker.write_text(f"failed once at epoch {epoch}\n")
        raise RuntimeError(f"test-only failure injected after epoch {epoch}")


def pause_once(epoch: int, rank: int) -> None:
    """Rank 0 stalls, so a test can kill the stage at a known point mid-training."""
    if (marker := _due(epoch, rank)) is not None:
        marker.write_text(f"paused after epoch {epoch}\n")
        time.sleep(600)


def pause_first_trial(epoch: int, rank: int) -> None:
    """`pause_once`, in sweep trial `trial-000` only (the sweep's resume test interrupts the sweep
    while that trial stalls and the others have ended)."""
    from ray import tune

    if tune.get_context().get_trial_name() == "trial-000":
        pause_once(epoch, rank)
