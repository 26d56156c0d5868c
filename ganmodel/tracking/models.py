"""The MLflow side of the generator as a model, in the order the pipeline meets it:

1. the train run logs it as a pyfunc (`log_generator_model`, models-from-code), a logged model;
2. the evaluate run attaches the evaluation metrics to that logged model (`log_model_metrics`),
   with the prepared dataset, so the model's page shows them;
3. the register run registers it and moves aliases (`register_model`, `set_alias`, ...);
4. `ganmodel generate` fetches its weights back (`fetch_generator_file`).

Every registry client call of the project is here; the gate that decides is `ganmodel.registry.gate`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ganmodel.errors import GanModelError, brief

# On logged models and registered versions: the identity of the weights. It belongs with the logged
# model (set here when the train run logs it, searched by `find_version`); the gate tags versions with it.
WEIGHTS_HASH_TAG = "weights_hash"
MODEL_NAME = "gan_generator"  # the logged model's name; not "generator", a run artifact folder
# MLflow links a metric the run logs later to the run's logged models *at the same step*; the train
# run keeps logging (its summary, system metrics at steps 0, 1, ...), none of which describes the
# model. At this step nothing else is ever logged, so the model holds the evaluation's metrics only.
LOGGED_MODEL_STEP = 2**31 - 1


def log_generator_model(generator_path: str | os.PathLike[str], params: dict[str, Any] | None = None) -> Any:
    """Log the generator file as a pyfunc model in the active run; returns MLflow's `ModelInfo`
    (`model_id`, `model_uri`). The model is logged as code (`registry/model_code.py`), with the
    weights as its artifact and only the serving modules as its code."""
    import mlflow

    from ganmodel.artifacts import GENERATOR, read_model_file, weights_hash
    from ganmodel.registry import serving

    sd, meta = read_model_file(generator_path, GENERATOR)
    with tempfile.TemporaryDirectory(prefix="ganmodel-log-") as tmp:
        # A fixed file name, whatever the source is called: consumers look for WEIGHTS_IN_MODEL.
        weights = Path(tmp) / serving.WEIGHTS_FILE
        shutil.copyfile(generator_path, weights)
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(serving.MODEL_CODE),
            artifacts={serving.ARTIFACT_KEY: str(weights)},
            code_paths=[serving.serving_package(Path(tmp) / "code")],
            signature=serving.signature(int(meta["z_dim"]), serving.image_shape(meta)),
            input_example=serving.input_example(int(meta["z_dim"])),
            pip_requirements=serving.pip_requirements(),
            metadata=serving.model_metadata(meta),
            params={k: str(v) for k, v in (params or {}).items()},
            tags={WEIGHTS_HASH_TAG: weights_hash(sd)},
            step=LOGGED_MODEL_STEP,
        )


def log_model_metrics(model_id: str, metrics: dict[str, float], dataset: Any | None = None) -> None:
    """Attach `metrics` to the logged model `model_id`, logged in the active run."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=model_id, dataset=dataset)


def _client(tracking_uri: str | None = None) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri or mlflow.get_tracking_uri())


def get_logged_model(model_id: str, tracking_uri: str | None = None) -> Any:
    """The logged model `model_id`; a one-line error if the store has none."""
    from mlflow.exceptions import MlflowException

    try:
        return _client(tracking_uri).get_logged_model(model_id)
    except MlflowException as err:
        raise GanModelError(f"logged model {model_id}: not found in the tracking store "
                            f"({brief(err)})") from None


def run_metric(run_id: str, key: str) -> float | None:
    """The value of metric `key` in run `run_id` (its latest, for a run that logged it more than
    once), or None when the run or the metric is not in the store."""
    from mlflow.exceptions import MlflowException

    try:
        value = _client().get_run(run_id).data.metrics.get(key)
    except MlflowException:
        return None
    return float(value) if value is not None else None


def version_model_id(mv: Any) -> str | None:
    """The logged model behind a model version (MLflow's sqlite store keeps it only as the
    version's `models:/<model id>` source)."""
    if getattr(mv, "model_id", None):
        return mv.model_id
    source = str(getattr(mv, "source", "") or "")
    rest = source.removeprefix("models:/")
    return rest if source.startswith("models:/m-") and "/" not in rest else None


def _not_found(err: Exception) -> bool:
    return getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def get_alias(name: str, alias: str) -> Any | None:
    """The version `alias` points to, or None (no such alias, or no such model).

    Read from the registered model's alias map: a missing alias is an INVALID_PARAMETER_VALUE
    error from `get_model_version_by_alias`, indistinguishable from a real bad request."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        version = client.get_registered_model(name).aliases.get(alias)
    except MlflowException as err:
        if _not_found(err):
            return None
        raise
    return client.get_model_version(name, str(version)) if version is not None else None


def find_version(name: str, weights_hash: str) -> Any | None:
    """The lowest version of `name` tagged with `weights_hash`, or None."""
    query = f"name = '{name}' and tags.{WEIGHTS_HASH_TAG} = '{weights_hash}'"
    versions = _client().search_model_versions(query)
    versions = [v for v in versions if v.tags.get(WEIGHTS_HASH_TAG) == weights_hash]
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register_model(model_uri: str, name: str, tags: dict[str, str]) -> Any:
    """A new version of `name` for the logged model at `model_uri` (linked to it in the UI)."""
    import mlflow

    return mlflow.register_model(model_uri, name, tags=tags)


def set_version_tags(name: str, version: str, tags: dict[str, str],
                     current: dict[str, str] | None = None) -> None:
    """Set the tags of a version that differ from `current`."""
    client = _client()
    for k, v in tags.items():
        if (current or {}).get(k) != v:
            client.set_model_version_tag(name, version, k, v)


def delete_version_tags(name: str, version: str, keys: list[str]) -> None:
    client = _client()
    for k in keys:
        client.delete_model_version_tag(name, version, k)


def describe_model(name: str, description: str) -> None:
    """Set the registered model's description if it has none."""
    client = _client()
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=description)


def describe_version(name: str, version: str, description: str) -> None:
    """Set a version's description (its model card, `ganmodel.registry.card`)."""
    _client().update_model_version(name, version, description=description)


def set_alias(name: str, alias: str, version: str) -> None:
    _client().set_registered_model_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    _client().delete_registered_model_alias(name, alias)


# --- fetching a generator for `ganmodel generate` ------------------------------------------------


def _mlflow_error(err: Exception) -> str:
    msg = str(getattr(err, "message", err)).strip().splitlines()
    return msg[0] if msg else type(err).__name__


def _resolve_registered(client: Any, ref: str, name: str, alias: str | None, version: str | None) -> str:
    """Check name/alias/version with clear messages; return a models:/name/version URI."""
    from mlflow.exceptions import MlflowException

    try:
        rm = client.get_registered_model(name)
    except MlflowException as err:
        if _not_found(err):
            raise GanModelError(f"{ref}: no registered model named {name!r}") from None
        raise
    if alias is not None:
        # Read the alias map: a missing alias is an INVALID_PARAMETER_VALUE error otherwise.
        aliases = dict(getattr(rm, "aliases", None) or {})
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise GanModelError(f"{ref}: model {name!r} has no alias {alias!r} (aliases: {known})")
        return f"models:/{name}/{aliases[alias]}"
    if version is not None:
        if not version.isdigit():
            raise GanModelError(f"{ref}: version must be a number or use @alias, got {version!r}")
        try:
            client.get_model_version(name, version)
        except MlflowException as err:
            if _not_found(err):
                raise GanModelError(f"{ref}: model {name!r} has no version {version}") from None
            raise
        return f"models:/{name}/{version}"
    raise GanModelError(f"{ref}: name a version or an alias, e.g. models:/{name}@champion")


def fetch_generator_file(ref: str, name: str | None, alias: str | None, version: str | None,
                         workdir: str | os.PathLike[str], tracking_uri: str) -> Path:
    """Download the weights file of a `models:/` or `runs:/` reference into `workdir`.

    `name`/`alias`/`version` are the parsed parts of a `models:/` reference (name `m-<id>` with
    neither is a logged model id). Only the weights are downloaded, never the pyfunc wrapper."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from ganmodel.registry.serving import WEIGHTS_FILE, WEIGHTS_IN_MODEL

    mlflow.set_tracking_uri(tracking_uri)
    client = _client(tracking_uri)
    try:
        logged_model_id = alias is None and version is None and (name or "").startswith("m-")
        if ref.startswith("models:/") and not logged_model_id:
            base = _resolve_registered(client, ref, name or "", alias, version)
            local = mlflow.artifacts.download_artifacts(f"{base}/{WEIGHTS_IN_MODEL}", dst_path=str(workdir))
            return Path(local)
        # A run artifact, or a logged model id (models:/m-<id>: its directory, a few files).
        local = Path(mlflow.artifacts.download_artifacts(ref.rstrip("/"), dst_path=str(workdir)))
    except GanModelError:
        raise
    except MlflowException as err:
        raise GanModelError(f"{ref}: {_mlflow_error(err)}") from None
    except OSError as err:
        raise GanModelError(f"{ref}: cannot download the generator ({brief(err)})") from None
    if local.is_dir():
        for cand in (local / WEIGHTS_IN_MODEL, local / WEIGHTS_FILE):
            if cand.is_file():
                return cand
        raise GanModelError(f"{ref}: no {WEIGHTS_IN_MODEL} or {WEIGHTS_FILE} in that artifact directory")
    return local
