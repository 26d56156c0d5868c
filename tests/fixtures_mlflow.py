"""MLflow fixtures: throwaway sqlite stores and a real `mlflow server`. Use them from a test
module with `pytest_plugins = ["fixtures_mlflow"]` (helpers: `mlflow_helpers`).

- `mlflow_template_db` (session): an empty, migrated sqlite database. Creating one runs all of
  MLflow's migrations (10-20 s on a busy 2-core box), so it is made once and copied.
- `mlflow_store` (module): a private sqlite store under a temp dir; MLFLOW_TRACKING_URI and
  mlflow's tracking URI point at it for the module, restored afterwards. Yields a `Store`
  (root, uri, experiment_id: an experiment with an absolute artifact root).
- `mlflow_server` (module): `mlflow server --host 127.0.0.1 --workers 1` on a free port with
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, artifacts proxied (`--artifacts-destination`),
  ready when /health answers (90 s bound); yields its URL and is always terminated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow_helpers import BIN, free_port, sqlite_uri, stop, subprocess_env, wait_http


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow sqlite database (made in a child process, once)."""
    db = tmp_path_factory.mktemp("mlflow-template") / "template.db"
    code = ("import sys; from mlflow.tracking import MlflowClient; "
            "MlflowClient(sys.argv[1]).search_experiments(); "
            "MlflowClient(sys.argv[1]).search_registered_models()")
    subprocess.run([sys.executable, "-c", code, sqlite_uri(db)], check=True, env=subprocess_env(),
                   capture_output=True, timeout=180)
    return db


@dataclass
class Store:
    root: Path
    uri: str
    experiment_id: str


@pytest.fixture(scope="module")
def mlflow_store(mlflow_template_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A private sqlite store for one test module; MLFLOW_TRACKING_URI points at it meanwhile."""
    import mlflow

    from ganmodel.tracking.store import ensure_experiment

    root = tmp_path_factory.mktemp("store")
    db = root / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(mlflow_template_db, db)
    uri = sqlite_uri(db)
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield Store(root, uri, ensure_experiment("tests", root, uri))
    finally:
        mlflow.set_tracking_uri(old)  # None also unsets MLFLOW_TRACKING_URI
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture(scope="module")
def mlflow_server(mlflow_template_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (one worker, artifacts proxied) on a free port; yields its URL."""
    root = tmp_path_factory.mktemp("server")
    db = root / "mlflow.db"
    shutil.copyfile(mlflow_template_db, db)
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", sqlite_uri(db), "--artifacts-destination", str(root / "artifacts")]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=subprocess_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/health", 90, proc)
        except (TimeoutError, RuntimeError) as err:
            raise RuntimeError(f"mlflow server: {err}\n{(root / 'server.log').read_text()[-3000:]}") from None
        yield url
    finally:
        stop(proc)
        log.close()


