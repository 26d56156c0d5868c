"""`ganmodel sweep`: a Ray Tune search over `train` keys, on a local Ray instance or a cluster.

The driver samples and validates every trial first (`space.sample_trials`), refuses a trial size
the cluster can never host, ships the prepared train split and the classifier through the object
store, opens the sweep's MLflow parent run, and hands Tune exactly the sampled list
(`tune.grid_search` over it) with an ASHA scheduler (Li et al. 2020, "A System for Massively
Parallel Hyperparameter Tuning"): trials report the quick FID every epoch, and at each rung
(`grace_period` * `reduction_factor`^k epochs) a trial outside the best 1/`reduction_factor` of
those that reached the rung stops.

Ctrl-C or SIGTERM stops the sweep, and Tune saves its experiment state under
`<train.storage_path>/<experiment>`; `ganmodel sweep --resume` continues it through
`Tuner.restore`: finished trials are not run again, unfinished ones continue from their last
checkpoint, in the same MLflow runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ganmodel.config import TrainParams, parse_params, read_params
from ganmodel.errors import GanModelError, brief
from ganmodel.io import OutputSet, write_json
from ganmodel.sweep.report import (
    FAILED,
    FINISHED,
    STOPPED,
    TrialResult,
    best_trial,
    best_yaml,
    dvc_command,
    result_rows,
    results_png,
    shell_line,
)
from ganmodel.sweep.space import Trial, sample_trials

RESOURCE_KEYS = ("sweep.workers_per_trial", "sweep.use_gpu")
TUNE_ENV_DEFAULTS = {
    # Every trial checkpoints every epoch by design (a retried or resumed trial continues from it);
    # Tune warns that the experiment snapshots this causes may become a bottleneck, each time.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Tune's newer console output prints its own tables whatever `verbose` says; the trials print
    # their epochs and `progress.Progress` one line per outcome.
    "RAY_AIR_NEW_OUTPUT": "0",
}


@dataclass
class SweepOutcome:
    results: list[TrialResult]
    best: TrialResult | None
    out_dir: Path
    command: list[str]  # the dvc exp run line for the best trial (empty if none finished)
    run_id: str


def trial_resources(cfg: TrainParams) -> dict[str, float]:
    """What a trial's own actor reserves: the worker itself (CPUs, a GPU) when the trial is one
    worker; nothing that counts when it drives a `TorchTrainer`, whose workers reserve their own
    (any CPU here would stop a trial of all the CPUs from ever starting). Tune refuses an empty
    request, so that trial asks for one byte of memory."""
    if cfg.num_workers > 1:
        return {"CPU": 0, "memory": 1}
    return {"CPU": cfg.cpus_per_worker or 1, "GPU": 1 if cfg.use_gpu else 0}


def trials_digest(trials: list[Trial]) -> str:
    """What a resumed sweep must still sample: the same trials, or `--resume` refuses."""
    text = json.dumps([asdict(t) for t in trials], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a scheduler, `kill`, a deleted pod) stops the sweep like Ctrl-C: Tune saves its
    experiment state, so `--resume` can continue it."""
    def handler(_signum: int, _frame: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _tuner(trainable: Any, trials: list[Trial], sweep: Any, storage: str, experiment: str,
           keep: int, progress: Any) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from ganmodel.sweep.progress import trial_name
    from ganmodel.sweep.trial import TRIAL_KEY

    scheduler = (ASHAScheduler(time_attr="epoch", max_t=sweep.epochs, grace_period=sweep.grace_period,
                               reduction_factor=sweep.reduction_factor)
                 if sweep.scheduler == "asha" else FIFOScheduler())
    return tune.Tuner(
        trainable,
        param_space={TRIAL_KEY: tune.grid_search([asdict(t) for t in trials])},
        tune_config=tune.TuneConfig(
            metric=sweep.metric, mode="min", scheduler=scheduler, num_samples=1,
            max_concurrent_trials=sweep.max_concurrent_trials,
            trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=experiment, storage_path=storage, verbose=0, callbacks=[progress],
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=keep)),
    )


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the sweep; its state is saved for `--resume`."""


@dataclass(frozen=True)
class SweepPaths:
    out_dir: Path  # sweeps/<name>: results, best.yaml, state.json

    @property
    def state(self) -> Path:
        return self.out_dir / "state.json"


def sweep_state(paths: SweepPaths, name: str, resume: bool) -> dict[str, Any] | None:
    """The state of the sweep to continue (`resume`), or None for a new one. A new sweep does not
    silently abandon an interrupted one of the same name, and there is nothing to resume in a
    finished one."""
    state = json.loads(paths.state.read_text()) if paths.state.is_file() else None
    if resume and state is None:
        raise GanModelError(f"--resume: no sweep {name!r} to resume ({paths.state} not found); "
                            "run `ganmodel sweep` without --resume to start it")
    if resume and state.get("finished"):
        raise GanModelError(f"--resume: sweep {name!r} has finished; its results are in {paths.out_dir}")
    if not resume and state is not None and not state.get("finished"):
        raise GanModelError(f"sweep.name: sweep {name!r} was interrupted; continue it with "
                            f"`ganmodel sweep --resume`, or delete {paths.state} to start it over")
    return state if resume else None


def run_sweep(params_path: str = "params.yaml", prepared: str = "data/prepared",
              classifier: str = "models/classifier.pt", resume: bool = False, apply: bool = False,
              root: str | os.PathLike[str] = ".") -> SweepOutcome:
    """Run (or with `resume` continue) the sweep that params.yaml's `sweep` section describes."""
    from ganmodel.training.cluster import apply_ray_env_defaults

    apply_ray_env_defaults()  # before anything imports ray
    for k, v in TUNE_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    raw = read_params(params_path)
    params = parse_params(raw, str(params_path))
    trials = sample_trials(raw, str(params_path))
    sweep = params.sweep
    paths = SweepPaths(Path(root) / "sweeps" / sweep.name)
    inputs = _check_inputs(prepared, classifier)
    state = sweep_state(paths, sweep.name, resume)
    if state is not None and state["trials_digest"] != trials_digest(trials):
        raise GanModelError(f"{params_path}: sweep: the sampled trials differ from those of the sweep "
                            f"{sweep.name!r} being resumed (sweep or train params changed); restore them, "
                            "or start a new sweep under another sweep.name")
    import ray

    try:
        return _run(params, raw.get("train") or {}, trials, paths, inputs, state, apply, root)
    finally:
        ray.shutdown()


def _check_inputs(prepared: str, classifier: str) -> dict[str, Any]:
    from ganmodel.data.prepared import read_meta

    meta = read_meta(prepared)
    train_file = Path(prepared) / "train"
    if not train_file.is_dir():
        raise GanModelError(f"{train_file}: prepared train split not found; run `dvc repro prepare`")
    if not Path(classifier).is_file():
        raise GanModelError(f"{classifier}: classifier not found; run `dvc repro classifier` "
                            "(the sweep scores trials with its quick FID)")
    return {"meta": meta, "train": str(train_file.absolute()), "classifier": str(Path(classifier).absolute())}


def _run(params: Any, raw_train: dict[str, Any], trials: list[Trial], paths: SweepPaths,
         inputs: dict[str, Any], state: dict[str, Any] | None, apply: bool,
         root: str | os.PathLike[str]) -> SweepOutcome:
    from ray import tune

    from ganmodel.sweep.progress import LAST_STATUSES, Progress, unfinished
    from ganmodel.sweep.trial import TrialSetup, run_trial
    from ganmodel.tracking.sweeps import reopen_sweep_run, start_sweep_run
    from ganmodel.training.cluster import (
        DATA_CPUS,
        check_resources,
        check_shared_input,
        check_shared_storage,
        init_ray,
    )
    from ganmodel.training.identity import package_hash
    from ganmodel.training.job import data_loading, storage_uri
    from ganmodel.training.ray_runner import JobSpec, ship_inputs

    sweep = params.sweep
    resuming = state is not None
    trial_cfg = TrainParams(**trials[0].train)
    loading = data_loading(params.train.data_loading, inputs["train"],
                           class_sampling=params.train.class_sampling)
    # A trial of one worker streams without Ray Data (`ShardBatches`); a TorchTrainer trial's reads
    # need a CPU beside its workers.
    data_cpus = DATA_CPUS if loading == "stream" and trial_cfg.num_workers > 1 else 0
    init_ray(trial_cfg, data_cpus)
    check_resources(trial_cfg, keys=RESOURCE_KEYS, data_cpus=data_cpus)
    if loading == "stream":
        from ganmodel.data.shards import shard_files

        d = Path(inputs["train"])
        check_shared_input(str(shard_files(d.parent, d.name)[0]), "train.data_loading")
    storage = storage_uri(params.train.storage_path)
    check_shared_storage(storage)
    if state is None:
        experiment = f"sweep-{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        logged = {"sweep": sweep.model_dump(mode="json"), "train": params.train.model_dump(mode="json")}
        run = start_sweep_run(params.tracking.experiment, sweep.name, logged,
                              {"sweep.experiment": experiment, "sweep.storage": storage}, root)
        state = {"experiment": experiment, "storage": storage, "run_id": run.run_id,
                 "trials_digest": trials_digest(trials)}
        write_json(paths.state, state)
    else:
        run = reopen_sweep_run(state["run_id"], root)
    job = ship_inputs(JobSpec({}, inputs["train"], None, run.tracking_uri, inputs["classifier"],
                              package_hash(), len(inputs["meta"]["classes"]),
                              data_loading=loading))
    setup = TrialSetup(job, run, sweep.name, state["storage"], state["experiment"])
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), trial_resources(trial_cfg))
    path = f"{state['storage'].rstrip('/')}/{state['experiment']}"
    print(f"sweep {sweep.name}: {len(trials)} trials of {sweep.epochs} epochs, {sweep.scheduler} scheduler, "
          f"{'resuming ' if resuming else ''}"
          f"Tune experiment {path}, MLflow run {run.run_id}")
    if tune.Tuner.can_restore(path):  # the restored experiment brings its own Progress callback
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True)
    else:  # a fresh sweep, or one interrupted before Tune saved anything
        tuner = _tuner(trainable, trials, sweep, state["storage"], state["experiment"],
                       params.train.keep_checkpoints, Progress(sweep.epochs))
    LAST_STATUSES.clear()
    with sigterm_as_ctrl_c():
        grid = tuner.fit()
    if unfinished():
        from ganmodel.tracking.sweeps import close_sweep_run

        close_sweep_run(run, "KILLED", tags={"sweep.interrupted": "true"})
        print(f"sweep {sweep.name}: interrupted with {unfinished()} of {len(grid)} trials "
              "unfinished; continue it with `ganmodel sweep --resume`")
        raise SweepInterrupted
    try:
        return _finish(params, raw_train, trials, grid, run, paths, apply)
    finally:  # Tune's experiment is complete, whatever the results say: nothing left to resume
        write_json(paths.state, {**state, "finished": True})


def _node_ids(tags: dict[str, str]) -> str:
    nodes = [v.split()[0] for k, v in sorted(tags.items()) if k.startswith("placement.rank")]
    return ",".join(dict.fromkeys(nodes))


def collect_results(trials: list[Trial], grid: Any, run: Any, epochs: int) -> list[TrialResult]:
    """Each trial's verdict from Tune (error or not) and its FID curve from its MLflow run: a trial
    that ended without error before `epochs` was stopped early by the scheduler."""
    from ganmodel.sweep.trial import TRIAL_KEY
    from ganmodel.tracking.sweeps import metric_history, trial_runs

    runs = trial_runs(run)
    by_index = {int(r.config[TRIAL_KEY]["index"]): r for r in grid}
    out = []
    for t in trials:
        res = by_index.get(t.index)
        mlrun = runs.get(t.index)
        fid = dict(metric_history(run, mlrun.info.run_id, "fid")) if mlrun is not None else {}
        error = brief(res.error) if res is not None and res.error is not None else ""
        last = max(fid, default=0)
        status = FAILED if error or res is None else (FINISHED if last >= epochs else STOPPED)
        tune_id = str((res.metrics or {}).get("trial_id", "")) if res is not None else ""
        out.append(TrialResult(t.index, t.sampled, t.overrides, status, fid,
                               mlrun.info.run_id if mlrun is not None else "", tune_id,
                               _node_ids(mlrun.data.tags) if mlrun is not None else "", error))
    return out


def _finish(params: Any, raw_train: dict[str, Any], trials: list[Trial], grid: Any, run: Any,
            paths: SweepPaths, apply: bool) -> SweepOutcome:
    from ganmodel.tracking.sweeps import (
        EPOCHS_TAG,
        FINAL_GRID_TAG,
        OUTCOME_TAG,
        close_sweep_run,
        close_trial_run,
    )

    sweep = params.sweep
    results = collect_results(trials, grid, run, sweep.epochs)
    for r in results:
        if r.run_id:
            close_trial_run(run, r.run_id, {OUTCOME_TAG: r.status, EPOCHS_TAG: r.epochs_run,
                                            FINAL_GRID_TAG: f"samples/epoch_{r.epochs_run:04d}.png"},
                            failed=r.status == FAILED)
    best = best_trial(results)
    present = list(raw_train)
    command = dvc_command(best.overrides, present) if best is not None else []
    files = {"results.csv": paths.out_dir / "results.csv", "results.png": paths.out_dir / "results.png"}
    if best is not None:
        files["best.yaml"] = paths.out_dir / "best.yaml"
    with OutputSet() as out:
        from ganmodel.io import write_csv

        write_csv(out.path(files["results.csv"]), result_rows(results))
        results_png(results, sweep.space, out.path(files["results.png"]),
                    f"sweep {sweep.name}: quick FID after each trial's last epoch")
        if best is not None:
            best_yaml(best, sweep.name, out.path(files["best.yaml"]))
        staged = [out.path(f) for f in files.values()]
        counts = {s: sum(r.status == s for r in results) for s in (FINISHED, STOPPED, FAILED)}
        metrics = {f"trials_{k}": float(v) for k, v in counts.items()}
        if best is not None:
            metrics["best_fid"] = best.last_fid
        close_sweep_run(run, "FINISHED" if best is not None else "FAILED", metrics,
                        {"sweep.best_trial": best.index if best is not None else "none",
                         "sweep.best_run_id": best.run_id if best is not None else ""}, staged)
    _print_summary(results, best, paths, command)
    if best is None:
        raise GanModelError(f"sweep {sweep.name}: no trial finished its {sweep.epochs} epochs "
                            f"({counts[FAILED]} failed); see {files['results.csv']} and MLflow run "
                            f"{run.run_id}")
    if apply:
        queue(best.overrides, present)
    return SweepOutcome(results, best, paths.out_dir, command, run.run_id)


def _print_summary(results: list[TrialResult], best: TrialResult | None, paths: SweepPaths,
                   command: list[str]) -> None:
    for r in sorted(results, key=lambda r: (r.status != FINISHED, r.last_fid)):
        print(f"  trial {r.index:3d}  {r.status:13s}  epochs {r.epochs_run:3d}  fid {r.last_fid:9.3f}  "
              f"{', '.join(f'{k}={v}' for k, v in r.sampled.items())}")
    print(f"sweep: results in {paths.out_dir}/ (results.csv, results.png"
          f"{', best.yaml' if best is not None else ''})")
    if best is not None:
        print(f"sweep: best trial {best.index} (quick FID {best.last_fid:.3f}); run the pipeline with it:")
        print(shell_line(command))


def queue(overrides: dict[str, Any], present: list[str]) -> None:
    """Queue the pipeline with `overrides` as a DVC experiment (`dvc exp run --queue`), on a
    params.yaml whose `train` section has the keys `present`."""
    argv = dvc_command(overrides, present, queue=True)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise GanModelError(f"--apply: cannot run dvc ({brief(err)})") from None
    if proc.returncode != 0:
        raise GanModelError(f"--apply: `{shell_line(argv)}` failed: {brief(proc.stderr or proc.stdout)}")
    print(f"sweep: queued `{shell_line(argv)}`; run it with `dvc queue start` (or `dvc exp run --run-all`)")
