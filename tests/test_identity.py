"""The identity of a training run (the Ray run name a re-run resumes) is derived from exactly what
DVC tracks for the train stage: its params sections, the data, the classifier and its code deps,
which cover every module the stage runs (tests/test_stage_deps.py derives them from the code)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from import_closure import Package, covered, stage_scripts

from ganmodel.config import load_params
from ganmodel.errors import GanModelError
from ganmodel.training.identity import EXECUTION_KEYS, stage_inputs, train_run_name


@pytest.fixture
def repo(repo_root: Path, tmp_path: Path) -> Path:
    """The sources DVC's train stage depends on, in a scratch directory."""
    for name in ("ganmodel", "pipelines"):
        shutil.copytree(repo_root / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(repo_root / name, tmp_path / name)
    return tmp_path


def _name(repo: Path, data: str = "d" * 64, clf: str = "c" * 64, **train) -> str:
    params = load_params(repo / "params.yaml").model_dump(mode="json")
    params["train"].update(train)
    return train_run_name(params, data, clf, repo / "dvc.yaml")


def test_the_code_inputs_cover_every_module_train_runs(repo_root: Path):
    """The identity hashes what dvc.yaml lists; that list is checked against the code (the train
    stage's import closure), so a module the stage runs cannot be left out of the run's identity."""
    code, sections = stage_inputs(repo_root / "dvc.yaml")
    assert sections == ["train", "tracking"]
    spec = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["train"]
    scripts = stage_scripts(spec["cmd"], repo_root)
    pkg = Package.scan(repo_root, "ganmodel")
    runs = [s.relative_to(repo_root).as_posix() for s in scripts]
    runs += [pkg.rel(m) for m in pkg.closure(scripts) if not pkg.runs_nothing(m)]
    assert "ganmodel/augment.py" in runs and "ganmodel/registry/model_code.py" in runs
    assert [f for f in runs if not covered(f, code)] == []
    # Outputs of other stages are inputs by hash (data, classifier), not code.
    upstream = {"data/prepared", "models/classifier.pt", "runs/prepare.json", "runs/classifier.json"}
    assert not upstream & set(code)


def test_the_name_moves_with_every_tracked_input(repo: Path):
    base = _name(repo)
    assert base.startswith("train-") and base == _name(repo)
    assert _name(repo, clf="e" * 64) != base  # a new classifier: a fresh run
    assert _name(repo, data="f" * 64) != base
    assert _name(repo, epochs=61) != base and _name(repo, eval_every=5) != base
    # Where and how robustly it runs is not what it computes.
    for key, value in (("storage_path", "/elsewhere"), ("max_failures", 3), ("keep_checkpoints", 5),
                       ("checkpoint_every", 2), ("ray_address", "ray://head:10001")):
        assert key in EXECUTION_KEYS and _name(repo, **{key: value}) == base
    # Code: any file under a code dependency, pipelines/ included; caches are not code.
    (repo / "ganmodel" / "training" / "__pycache__").mkdir(exist_ok=True)
    (repo / "ganmodel" / "training" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert _name(repo) == base
    with open(repo / "pipelines" / "train.py", "a") as f:
        f.write("# a comment is a change DVC sees\n")
    assert _name(repo) != base


@pytest.mark.parametrize("path", ["pipelines/register.py", "ganmodel/sweep/space.py",
                                  "ganmodel/sweep/runner.py", "ganmodel/evaluation/metrics.py",
                                  "ganmodel/registry/gate.py"])
def test_a_change_to_code_train_does_not_run_keeps_the_run(repo: Path, path: str):
    base = _name(repo)
    with open(repo / path, "a") as f:
        f.write("# not run by the train stage\n")
    assert _name(repo) == base


@pytest.mark.parametrize("path", ["ganmodel/augment.py", "ganmodel/evaluation/quick.py",
                                  "ganmodel/registry/model_code.py"])
def test_a_change_to_code_train_runs_starts_a_new_run(repo: Path, path: str):
    base = _name(repo)
    with open(repo / path, "a") as f:
        f.write("# run by the train stage (imported, or loaded by path)\n")
    assert _name(repo) != base


def test_missing_dvc_yaml_or_stage_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(GanModelError, match="dvc.yaml: not found; run the train stage from the repository"):
        stage_inputs(tmp_path / "dvc.yaml")
    (tmp_path / "dvc.yaml").write_text("stages: {prepare: {cmd: x}}\n")
    with pytest.raises(GanModelError, match="expected a stage 'train'"):
        stage_inputs(tmp_path / "dvc.yaml")
