"""The sweep's params, search space and results, without Ray: the `sweep` section parses with
one-line errors naming the key; sampled trials are seeded, validated through the params model
and train exactly their overrides; the resource check names the sweep's keys; results.csv, the
PNG, best.yaml and the `dvc exp run -S` line agree with each other. The CLI refuses bad params
in one line before Ray starts."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ganmodel.config import TrainParams, parse_params
from ganmodel.errors import GanModelError
from ganmodel.sweep.report import (
    FINISHED,
    STOPPED,
    TrialResult,
    best_trial,
    best_yaml,
    dvc_command,
    result_rows,
    results_png,
)
from ganmodel.sweep.runner import RESOURCE_KEYS, trial_resources
from ganmodel.sweep.space import sample_trials, with_train
from ganmodel.training.cluster import check_resources

SPACE = {"lr_g": {"loguniform": [1.0e-4, 1.0e-2]}, "r1_gamma": {"uniform": [0.0, 1.0]},
         "d_steps": {"randint": [1, 3]}, "augment": {"choice": [[], ["translation"]]}}


@pytest.fixture
def raw(repo_root: Path) -> dict[str, Any]:
    """The repo's params.yaml with a small sweep section."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["sweep"] = {"name": "t", "space": SPACE, "num_samples": 6, "seed": 3}
    return params


def _error(raw: dict[str, Any], fn=parse_params) -> str:
    with pytest.raises(GanModelError) as exc:
        fn(raw)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_repo_sweep_section_samples_valid_trials(repo_root: Path) -> None:
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    sweep = parse_params(raw).sweep
    assert sweep.space and set(sweep.space) <= set(TrainParams.model_fields)
    trials = sample_trials(raw)
    assert len(trials) == sweep.num_samples
    assert len({t.label() for t in trials}) > 1


@pytest.mark.parametrize(("space", "expected"), [
    ({"lr": {"choice": [1]}}, "sweep.space.lr: not a train key (expected some of: "),
    ({"epochs": {"choice": [1, 2]}}, "sweep.space.epochs: not searchable: sweep.epochs sets"),
    ({"num_workers": {"choice": [1, 2]}}, "sweep.space.num_workers: not searchable: sweep.workers_per_trial"),
    ({"preset": {"choice": ["seed"]}}, "sweep.space.preset: not searchable"),
    ({"lr_g": {"normal": [0, 1]}}, "sweep.space.lr_g: unknown distribution 'normal'; expected one of choice"),
    ({"lr_g": 0.001}, "sweep.space.lr_g: expected one distribution"),
    ({"lr_g": {"uniform": [1, 2], "choice": [1]}}, "sweep.space.lr_g: expected one distribution"),
    ({"lr_g": {"choice": []}}, "sweep.space.lr_g: choice expects a non-empty list"),
    ({"lr_g": {"uniform": [2, 1]}}, "sweep.space.lr_g: uniform expects lo < hi, got [2, 1]"),
    ({"lr_g": {"uniform": ["a", 1]}}, "sweep.space.lr_g: uniform expects two numbers [lo, hi]"),
    ({"lr_g": {"loguniform": [0, 1]}}, "sweep.space.lr_g: loguniform expects 0 < lo"),
    ({"d_steps": {"randint": [1, 2.5]}}, "sweep.space.d_steps: randint expects two integers"),
])
def test_bad_space_is_one_line_naming_the_key(raw: dict[str, Any], space, expected: str) -> None:
    raw["sweep"]["space"] = space
    assert _error(raw).startswith(f"params.yaml: {expected}")


@pytest.mark.parametrize(("sweep", "expected"), [
    ({"grace_period": 5, "epochs": 3}, "sweep.grace_period: 5 exceeds sweep.epochs=3"),
    ({"scheduler": "pbt"}, "sweep.scheduler: Input should be 'asha' or 'none'"),
    ({"metric": "kid"}, "sweep.metric: Input should be 'fid'"),
    ({"num_samples": 0}, "sweep.num_samples: Input should be greater than or equal to 1"),
    ({"reduction_factor": 1}, "sweep.reduction_factor: Input should be greater than or equal to 2"),
    ({"name": "../x"}, "sweep.name: String should match pattern"),
    ({"workers": 2}, "sweep.workers: unknown key (expected one of: name, space, num_samples"),
])
def test_bad_sweep_keys_are_one_line(raw: dict[str, Any], sweep, expected: str) -> None:
    raw["sweep"].update(sweep)
    assert _error(raw).startswith(f"params.yaml: {expected}")


def test_trials_are_seeded_in_range_and_validated(raw: dict[str, Any]) -> None:
    trials = sample_trials(raw)
    assert [t.sampled for t in trials] == [t.sampled for t in sample_trials(raw)]  # seeded
    raw["sweep"]["seed"] = 4
    assert [t.sampled for t in trials] != [t.sampled for t in sample_trials(raw)]
    raw["sweep"]["seed"] = 3
    for t in trials:
        s = t.sampled
        assert 1e-4 <= s["lr_g"] <= 1e-2 and 0.0 <= s["r1_gamma"] <= 1.0
        assert s["d_steps"] in (1, 2) and s["augment"] in ([], ["translation"])
        # What the trial trains is what its overrides say, with the sweep's settings on top.
        cfg = TrainParams(**t.train)
        assert (cfg.lr_g, cfg.r1_gamma, cfg.d_steps, list(cfg.augment)) == (
            s["lr_g"], s["r1_gamma"], s["d_steps"], s["augment"])
        sweep = parse_params(raw).sweep
        assert (cfg.epochs, cfg.num_workers, cfg.eval_every, cfg.max_failures) == (
            sweep.epochs, sweep.workers_per_trial, 1, 0)
        # Applied to params.yaml (best.yaml, the dvc exp run line) they validate, and train the same recipe.
        applied = parse_params(with_train(raw, t.overrides)).train
        assert {k: getattr(applied, k) for k in ("arch", "betas", "ema_decay", "lr_g", "r1_gamma")} == {
            k: getattr(cfg, k) for k in ("arch", "betas", "ema_decay", "lr_g", "r1_gamma")}


def test_recipe_keys_next_to_a_preset_train_preset_custom(raw: dict[str, Any]) -> None:
    assert raw["train"]["preset"] == "conv_sn_cond"
    t = sample_trials(raw)[0]
    # lr_g is a recipe key: the preset's recipe is spelt out under preset custom.
    assert t.overrides["preset"] == "custom"
    recipe = (t.overrides["arch"], t.overrides["betas"], t.overrides["ema_decay"], t.overrides["conditional"],
              t.overrides["precision"])
    assert recipe == ("conv", [0.0, 0.9], 0.999, True, "auto")
    raw["sweep"]["space"] = {"eval_samples": {"choice": [100, 200]}}  # no recipe key: no preset change
    assert set(sample_trials(raw)[0].overrides) == {"eval_samples"}


def test_a_sampled_combination_that_fails_train_validation_stops_the_sweep(raw: dict[str, Any]) -> None:
    raw["sweep"]["space"] = {"batch_size": {"choice": [64, 100]}}
    raw["sweep"]["workers_per_trial"] = 3
    msg = _error(raw, sample_trials)
    assert msg.startswith("params.yaml: sweep.space: trial 0 (batch_size="), msg
    assert "train.batch_size: " in msg and "is not divisible by train.num_workers=3" in msg
    raw["sweep"].update(space={"z_dim": {"uniform": [10, 20]}}, workers_per_trial=1)
    msg = _error(raw, sample_trials)
    assert msg.startswith("params.yaml: sweep.space: trial 0 (z_dim=") and "train.z_dim:" in msg
    raw["sweep"]["space"] = {}
    assert _error(raw, sample_trials).startswith("params.yaml: sweep.space: is empty")


def _node(cpu: float, gpu: float = 0) -> dict[str, Any]:
    return {"NodeID": "n", "Alive": True, "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {})}}


def test_unsatisfiable_trial_resources_are_refused_naming_the_sweep_key(
        raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANMODEL_AUTOSCALING", raising=False)
    raw["sweep"].update(workers_per_trial=3, cpus_per_trial=1, space={"lr_d": {"choice": [1e-3]}})
    raw["train"]["batch_size"] = 96
    raw["train"]["preset"] = "custom"
    cfg = TrainParams(**sample_trials(raw)[0].train)
    with pytest.raises(GanModelError, match=r"^sweep.workers_per_trial: 3 workers need 1 CPU each, but the "
                                            r"Ray cluster's 1 node\(s\) \(2 CPUs, 0 GPUs\) can host only 2"):
        check_resources(cfg, [_node(2)], keys=RESOURCE_KEYS)
    raw["sweep"].update(workers_per_trial=1, use_gpu=True)
    cfg = TrainParams(**sample_trials(raw)[0].train)
    with pytest.raises(GanModelError, match=r"^sweep.use_gpu: 1 workers need 1 CPU and 1 GPU each"):
        check_resources(cfg, [_node(2)], keys=RESOURCE_KEYS)
    check_resources(cfg, [_node(2, 1)], keys=RESOURCE_KEYS)
    assert trial_resources(cfg) == {"CPU": 1, "GPU": 1}  # a one-worker trial is the worker
    # A trial of more workers: they reserve their own.
    two = TrainParams(preset="custom", num_workers=2, batch_size=64)
    assert trial_resources(two) == {"CPU": 0, "memory": 1}


def _results() -> list[TrialResult]:
    over = [{"lr_g": 1e-3, "augment": []}, {"lr_g": 1e-2, "augment": ["translation"]},
            {"lr_g": 3e-4, "augment": []}]
    return [TrialResult(0, over[0], over[0], FINISHED, {1: 40.0, 2: 30.0}, "r0"),
            TrialResult(1, over[1], over[1], STOPPED, {1: 90.0}, "r1"),
            TrialResult(2, over[2], over[2], FINISHED, {1: 35.0, 2: 20.0}, "r2")]


def test_results_best_yaml_and_the_dvc_line_agree(raw: dict[str, Any], tmp_path: Path) -> None:
    results = _results()
    best = best_trial(results)
    assert best is not None and best.index == 2
    # A stopped trial never wins, however low its FID: it trained fewer epochs.
    results[1].fid = {1: 1.0}
    assert best_trial(results).index == 2
    rows = result_rows(results)
    assert [r["status"] for r in rows] == ["finished", "stopped_early", "finished"]
    assert rows[1]["stopped_early"] is True and rows[1]["epochs_run"] == 1
    assert rows[1]["augment"] == '["translation"]'
    assert (rows[2]["last_fid"], rows[2]["best_fid"]) == (20.0, 20.0)
    best_yaml(best, "t", tmp_path / "best.yaml")
    fragment = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert fragment == {"train": best.overrides}
    argv = dvc_command(best.overrides, ["lr_g", "epochs"])
    assert argv[:3] == ["dvc", "exp", "run"] and "--queue" in dvc_command(best.overrides, [], queue=True)
    # A key params.yaml lacks is added (Hydra's `++`: add or override), one it has is changed.
    assert argv[3:] == ["-S", "train.lr_g=0.0003", "-S", "++train.augment=[]"]
    # DVC reads each -S value as YAML: the same values come back.
    sets = dict(a.lstrip("+").removeprefix("train.").split("=", 1) for a in argv[4::2])
    assert {k: yaml.safe_load(v) for k, v in sets.items()} == best.overrides
    results_png(results, {"lr_g": {"loguniform": [1e-4, 1e-2]}, "augment": {"choice": [[], ["translation"]]}},
                tmp_path / "results.png", "t")
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert math.isnan(TrialResult(3, {}, {}, "failed").last_fid)


def test_cli_refuses_bad_sweep_params_in_one_line_before_ray(raw: dict[str, Any], tmp_path: Path,
                                                              repo_root: Path) -> None:
    raw["sweep"]["space"] = {"lr": {"choice": [1e-3]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    code = ("import sys; sys.argv = ['ganmodel', 'sweep']; "
            "from ganmodel.registry.cli import main\n"
            "try:\n    main()\nfinally:\n    print('ray' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(repo_root)})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[0].startswith("error: params.yaml: sweep.space.lr: not a train key"), proc.stderr
    assert lines[1:] == ["False"]  # refused before Ray was imported
    assert not (tmp_path / "sweeps").exists()  # no partial outputs


def test_a_new_sweep_does_not_abandon_an_interrupted_one(tmp_path: Path) -> None:
    from ganmodel.sweep.runner import SweepPaths, sweep_state

    paths = SweepPaths(tmp_path / "sweeps" / "t")
    with pytest.raises(GanModelError, match=r"^--resume: no sweep 't' to resume"):
        sweep_state(paths, "t", resume=True)
    assert sweep_state(paths, "t", resume=False) is None
    paths.out_dir.mkdir(parents=True)
    paths.state.write_text('{"experiment": "e", "run_id": "r"}')
    with pytest.raises(GanModelError, match=r"^sweep.name: sweep 't' was interrupted; continue it with "
                                            r"`ganmodel sweep --resume`, or delete .*state.json"):
        sweep_state(paths, "t", resume=False)
    assert sweep_state(paths, "t", resume=True) == {"experiment": "e", "run_id": "r"}
    paths.state.write_text('{"experiment": "e", "run_id": "r", "finished": true}')
    assert sweep_state(paths, "t", resume=False) is None
    with pytest.raises(GanModelError, match=r"^--resume: sweep 't' has finished"):
        sweep_state(paths, "t", resume=True)
