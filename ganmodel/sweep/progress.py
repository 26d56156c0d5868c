"""The sweep's Tune callback: one printed line per trial outcome (the trials print their own
epochs), and the trials' statuses as of Tune's last step.

Those statuses are the only way to tell an interrupted sweep from a finished one: when Ctrl-C or
SIGTERM stops `Tuner.fit`, Tune saves its state and then stops the live trials (TERMINATED) before
`fit` returns. They are kept in this module, not in the callback: `Tuner.restore` brings back the
callback pickled with the experiment (by reference to this module), not the one the driver made.

Imports Ray at import time: `ganmodel.sweep.runner` imports it only when a sweep runs.
"""

from __future__ import annotations

from typing import Any

from ray import tune

from ganmodel.sweep.trial import TRIAL_KEY

LAST_STATUSES: dict[str, str] = {}  # trial name -> Tune status at the end of the last step
DONE = ("TERMINATED", "ERROR")


def trial_name(trial: Any) -> str:
    """`trial-007`: Tune's name and directory for the trial of sampled index 7."""
    return f"trial-{int(trial.config[TRIAL_KEY]['index']):03d}"


def unfinished() -> int:
    """Trials that were neither finished nor failed when Tune's loop last stepped."""
    return sum(s not in DONE for s in LAST_STATUSES.values())


class Progress(tune.Callback):
    """Prints a line when a trial finishes, is stopped by the scheduler, fails and is retried, or fails
    for good."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        LAST_STATUSES.clear()
        LAST_STATUSES.update({trial_name(t): t.status for t in trials})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        epoch, fid = int(last.get("epoch", 0)), last.get("fid", float("nan"))
        how = "finished" if epoch >= self.epochs else f"stopped early by the scheduler after epoch {epoch}"
        print(f"sweep: {trial_name(trial)} {how} (quick FID {fid:.3f})", flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune's FailureConfig retries the trial from its last checkpoint (a multi-worker trial's
        # TorchTrainer resumes its own, under the same Train run name).
        print(f"sweep: {trial_name(trial)} failed (failure {trial.num_failures}); retrying from its "
              "last checkpoint", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"sweep: {trial_name(trial)} failed (retries exhausted); see its MLflow run", flush=True)
