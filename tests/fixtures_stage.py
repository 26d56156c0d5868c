"""Session fixture for stage integration tests: use from a test module with
`pytest_plugins = ["fixtures_mlflow", "fixtures_stage"]` (helpers: `stage_repo`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from stage_repo import TINY_CLASSIFIER, TINY_TRAIN, copy_repo, edit_params, fresh_mlflow_store, sh, stage_env


@pytest.fixture(scope="session")
def upstream_repo(repo_root: Path, tmp_path_factory: pytest.TempPathFactory,
                  mlflow_template_db: Path) -> Path:
    """A copied repo with git and DVC initialised, tiny params, and the upstream stages of `train`
    (prepare, a 1-epoch classifier) reproduced. Clone it with `clone_stage_repo`."""
    tmp = tmp_path_factory.mktemp("upstream")
    repo = tmp / "repo"
    copy_repo(repo_root, repo)
    edit_params(repo, "classifier", **TINY_CLASSIFIER)
    edit_params(repo, "train", **TINY_TRAIN)
    fresh_mlflow_store(tmp, mlflow_template_db)
    env = stage_env(repo, tmp, str(tmp))
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    shutil.copy2(repo_root / ".dvc" / "config", repo / ".dvc" / "config")  # analytics and update checks off
    sh(["dvc", "repro", "classifier"], repo, env, timeout=300)
    return repo
