"""Where tracking data lives: the MLflow store (a sqlite file under `mlruns/` or a server), its
artifact root, and the experiment, created the way the MLflow UI reads it."""

from __future__ import annotations

import os
from pathlib import Path

from ganmodel.errors import GanModelError, brief

MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # Fail fast on an unreachable server instead of retrying for minutes.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def default_tracking_uri(root: str | os.PathLike[str]) -> str:
    """sqlite store under `<root>/mlruns` (four slashes: an absolute path)."""
    return "sqlite:///" + str((Path(root) / "mlruns" / "mlflow.db").absolute())


def configure_tracking(root: str | os.PathLike[str] = ".") -> str:
    """Resolve the tracking URI (`MLFLOW_TRACKING_URI` wins), export it for child processes
    (Ray workers), and check that a remote server answers."""
    for k, v in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    elif uri.startswith(("http://", "https://")):
        check_server(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with a clear message when an MLflow server does not answer `/health`."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status != 200:
                raise GanModelError(f"MLFLOW_TRACKING_URI: {uri} answered /health with {r.status}")
    except (urllib.error.URLError, OSError) as err:
        raise GanModelError(
            f"MLFLOW_TRACKING_URI: MLflow server at {uri} is unreachable ({brief(err)})") from None


def artifact_root(root: str | os.PathLike[str], uri: str) -> str | None:
    """Absolute artifact location for a local store (beside its sqlite file); a server decides its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).absolute().parent / "artifacts").as_uri()
    if uri.startswith("file:") or "://" not in uri:
        return (Path(root).absolute() / "mlruns" / "artifacts").as_uri()
    return None


# MLflow 3's UI files an experiment by this tag: GenAI experiments open on "Overview: Traces"; a
# model-training experiment opens on its runs table with the training-run views.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(name: str, root: str | os.PathLike[str], uri: str) -> str:
    """The id of experiment `name`, created (absolute artifact root, model-training kind) if missing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise GanModelError(f"tracking.experiment: experiment {name!r} is deleted; "
                                "restore it or pick another name")
        if exp.tags.get(EXPERIMENT_KIND_TAG) is None:  # made before the kind was set
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(root, uri),
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


# The UI opens in its GenAI mode unless told otherwise (a per-browser setting): this query asks for
# the model-training views (runs table, logged models, registry).
MODEL_TRAINING_VIEW = "?workflowType=machine_learning"


def experiment_url(name: str, ui: str = "http://127.0.0.1:5000", root: str | os.PathLike[str] = ".") -> str:
    """The MLflow UI address of experiment `name`, in the model-training view, in the store
    `configure_tracking` would use (the experiments list if the store or the experiment does not
    exist yet; nothing is created)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)
    home = f"{ui}/#/experiments{MODEL_TRAINING_VIEW}"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return home
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(uri).get_experiment_by_name(name)
    return f"{ui}/#/experiments/{exp.experiment_id}{MODEL_TRAINING_VIEW}" if exp is not None else home
