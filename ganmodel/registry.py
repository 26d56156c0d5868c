"""Registering the generator in the MLflow Model Registry, behind a quality gate.

One registered model (`register.model_name`); one version per distinct set of generator weights
(keyed on the tag `weights_hash`, the `sha256_state_dict` of the weights). Two aliases:

- `champion`: the version to ship. It moves to a new version only if that version passes every
  threshold of `RegisterParams` (fid_ratio <= max_fid_ratio, classes_covered >=
  min_classes_covered) **and** has a strictly lower FID than the current champion *under the same
  evaluation protocol* (same data_hash, classifier_hash, n_samples and eval_seed: FID is biased
  at finite N and depends on the feature network, so numbers from different protocols do not
  compare). With no champion yet, passing the gate is enough.
- `challenger`: the latest registered version that did not become champion.

Protocol change: when the champion was evaluated under another protocol, the new version is NOT
compared and the champion is left alone (decision `challenger`, the reason names the differing
fields). This never silently swaps a champion on incomparable numbers. To compare under a new
protocol, re-run the pipeline for the champion's weights under it (re-registering the same
weights re-tags that version with the new evaluation, so the next comparison is like for like),
or move the alias by hand.

Registering weights that already have a version creates nothing: the version is re-tagged with
the current evaluation and lineage, and the gate is applied again (idempotent when nothing
changed; the current champion stays champion).

Every version carries tags: `metric.<name>` for each evaluation metric (N included, as
`metric.n_samples`), `protocol.*`, `data.hash`, `classifier.hash`, `git.commit`, `param.<key>`
(flattened params), `run_id.<stage>` for prepare/classifier/train/evaluate/register, the
`weights_hash`, and the gate's `gate.decision` / `gate.reason` / `gate.thresholds`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from ganmodel.config import RegisterParams
from ganmodel.errors import GanModelError, brief
from ganmodel.runs import DATA_HASH_TAG, GIT_TAG, flatten

CHAMPION = "champion"
CHALLENGER = "challenger"
WEIGHTS_HASH_TAG = "weights_hash"
CLASSIFIER_HASH_TAG = "classifier.hash"
METRIC_TAG = "metric.{}"
PARAM_TAG = "param.{}"
RUN_TAG = "run_id.{}"
PROTOCOL_TAG = "protocol.{}"
MODEL_DESCRIPTION = "GAN generator: latent vectors [n, z_dim] -> images [n, 1, 28, 28] in [-1, 1]"
DECISION_TAG = "gate.decision"
REASON_TAG = "gate.reason"
THRESHOLDS_TAG = "gate.thresholds"
SUPERSEDED_TAG = "gate.superseded_by"

# Fields that define the evaluation protocol; metrics only compare when all of them match.
PROTOCOL_FIELDS = ("data_hash", "classifier_hash", "n_samples", "eval_seed")
REQUIRED_METRICS = ("fid", "fid_ratio", "classes_covered", *PROTOCOL_FIELDS)
STAGES = ("prepare", "classifier", "train", "evaluate", "register")


@dataclass(frozen=True)
class Protocol:
    data_hash: str
    classifier_hash: str
    n_samples: int
    eval_seed: int

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> Protocol:
        return cls(str(metrics["data_hash"]), str(metrics["classifier_hash"]),
                   _as_int(metrics["n_samples"], "n_samples"), _as_int(metrics["eval_seed"], "eval_seed"))

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Protocol | None:
        """The protocol recorded on a version; None if it has none (registered by hand)."""
        try:
            return cls.from_metrics({f: tags[PROTOCOL_TAG.format(f)] for f in PROTOCOL_FIELDS})
        except (KeyError, GanModelError):
            return None

    def differences(self, other: Protocol) -> list[str]:
        """`field new vs champion` for each field that differs (hashes shortened)."""
        out = []
        for f in PROTOCOL_FIELDS:
            a, b = getattr(self, f), getattr(other, f)
            if a != b:
                short = (lambda v: v[:12]) if isinstance(a, str) else (lambda v: v)
                out.append(f"{f} {short(a)} vs {short(b)}")
        return out

    def tags(self) -> dict[str, str]:
        return {PROTOCOL_TAG.format(f): str(getattr(self, f)) for f in PROTOCOL_FIELDS}


@dataclass(frozen=True)
class Decision:
    decision: str  # CHAMPION or CHALLENGER
    reason: str


def _as_int(value: Any, what: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise GanModelError(f"{what}: expected an integer, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise GanModelError(f"{what}: expected an integer, got {value!r}")
    return int(f)


def check_metrics(metrics: dict[str, Any], source: str = "evaluation metrics") -> None:
    """The keys the gate and the protocol need must be present and well-typed."""
    if not isinstance(metrics, dict):
        raise GanModelError(f"{source}: expected a JSON object of metrics")
    missing = [k for k in REQUIRED_METRICS if k not in metrics]
    if missing:
        raise GanModelError(f"{source}: missing {', '.join(missing)} (needed by the register gate)")
    for k in ("fid", "fid_ratio", "classes_covered"):
        v = metrics[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise GanModelError(f"{source}: {k} must be a finite number, got {v!r}")
    Protocol.from_metrics(metrics)


def gate_failures(metrics: dict[str, Any], cfg: RegisterParams) -> list[str]:
    """The thresholds of `RegisterParams` that `metrics` misses (empty: the gate passes)."""
    out = []
    if metrics["fid_ratio"] > cfg.max_fid_ratio:
        out.append(f"fid_ratio {metrics['fid_ratio']:.3g} > max_fid_ratio {cfg.max_fid_ratio:g}")
    if metrics["classes_covered"] < cfg.min_classes_covered:
        out.append(f"classes_covered {metrics['classes_covered']:g} < min_classes_covered "
                   f"{cfg.min_classes_covered}")
    return out


def thresholds(cfg: RegisterParams) -> str:
    return f"fid_ratio <= {cfg.max_fid_ratio:g}, classes_covered >= {cfg.min_classes_covered}"


def decide(metrics: dict[str, Any], cfg: RegisterParams, champion: Any | None,
           version: str | None = None) -> Decision:
    """The gate, as a pure function of the new metrics, the thresholds and the current champion
    (a `ModelVersion`-like object with `.version` and `.tags`, or None). `version`: the new
    version's number when it already exists (re-registration)."""
    failures = gate_failures(metrics, cfg)
    if champion is not None and version is not None and str(champion.version) == str(version):
        if failures:
            return Decision(CHAMPION, f"already the champion (same weights); note: the gate would now fail "
                                      f"({'; '.join(failures)})")
        return Decision(CHAMPION, "already the champion (same weights); gate passes")
    champ = f"champion v{champion.version}" if champion is not None else "no champion"
    if failures:
        kept = f"{champ} unchanged" if champion is not None else "no champion set"
        return Decision(CHALLENGER, f"gate failed: {'; '.join(failures)}; {kept}")
    if champion is None:
        return Decision(CHAMPION, f"no champion yet and the gate passes ({thresholds(cfg)})")
    theirs = Protocol.from_tags(champion.tags)
    if theirs is None:
        return Decision(CHALLENGER, f"not compared: {champ} has no recorded evaluation protocol; "
                                    f"{champ} left alone")
    diff = Protocol.from_metrics(metrics).differences(theirs)
    if diff:
        return Decision(CHALLENGER, f"not compared: evaluation protocol differs from {champ} "
                                    f"({'; '.join(diff)}); {champ} left alone")
    try:
        their_fid = float(champion.tags[METRIC_TAG.format("fid")])
    except (KeyError, ValueError):
        return Decision(CHALLENGER, f"not compared: {champ} has no recorded fid; {champ} left alone")
    fid = float(metrics["fid"])
    if fid < their_fid:
        return Decision(CHAMPION, f"gate passes and fid {fid:.4g} beats {champ} fid {their_fid:.4g} "
                                  "under the same protocol")
    return Decision(CHALLENGER, f"gate passes but fid {fid:.4g} does not beat {champ} fid {their_fid:.4g}; "
                                f"{champ} unchanged")


def _tag_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def version_tags(metrics: dict[str, Any], cfg: RegisterParams, *, weights_hash: str, run_ids: dict[str, str],
                 params: dict[str, Any] | None, git_commit: str) -> dict[str, str]:
    tags = {WEIGHTS_HASH_TAG: weights_hash, GIT_TAG: git_commit,
            DATA_HASH_TAG: str(metrics["data_hash"]), CLASSIFIER_HASH_TAG: str(metrics["classifier_hash"]),
            THRESHOLDS_TAG: thresholds(cfg), **Protocol.from_metrics(metrics).tags()}
    for k, v in metrics.items():
        tags[METRIC_TAG.format(k)] = _tag_value(v)
    for k, v in flatten(params or {}).items():
        tags[PARAM_TAG.format(k)] = _tag_value(v)
    for stage, run_id in run_ids.items():
        tags[RUN_TAG.format(stage)] = str(run_id)
    return tags


def generator_weights_hash(generator_path: str | os.PathLike[str]) -> str:
    """`sha256_state_dict` of the weights in a `save_generator` file."""
    import torch

    from ganmodel.io import sha256_state_dict

    try:
        obj = torch.load(generator_path, map_location="cpu", weights_only=True)
        return sha256_state_dict(obj["state_dict"])
    except FileNotFoundError:
        raise GanModelError(f"{generator_path}: generator file not found") from None
    except Exception as err:  # noqa: BLE001
        raise GanModelError(f"{generator_path}: not a ganmodel generator file ({brief(err)})") from None


def _not_found(err: Exception) -> bool:
    return getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def get_alias(client: Any, name: str, alias: str) -> Any | None:
    """The version `alias` points to, or None (no such alias, or no such model).

    Read from the registered model's alias map: a missing alias is an INVALID_PARAMETER_VALUE
    error from `get_model_version_by_alias`, indistinguishable from a real bad request."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_registered_model(name).aliases.get(alias)
    except MlflowException as err:
        if _not_found(err):
            return None
        raise
    return client.get_model_version(name, str(version)) if version is not None else None


def find_version(client: Any, name: str, weights_hash: str) -> Any | None:
    """The lowest version of `name` tagged with `weights_hash`, or None."""
    versions = client.search_model_versions(
        f"name = '{name}' and tags.{WEIGHTS_HASH_TAG} = '{weights_hash}'")
    versions = [v for v in versions if v.tags.get(WEIGHTS_HASH_TAG) == weights_hash]
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register_generator(generator_path: str | os.PathLike[str], metrics: dict[str, Any], cfg: RegisterParams,
                       *, run_ids: dict[str, str], params: dict[str, Any] | None = None,
                       git_commit: str | None = None) -> dict[str, Any]:
    """Register the generator (once per weights) and apply the gate; see the module docstring.

    A new version's model is logged (pyfunc, `ganmodel.serving`) into the active MLflow run,
    whose id is recorded as `run_id.register` unless `run_ids` has one. Prints the decision.
    Returns {model_name, version, decision, reason, champion_version, weights_hash, created}.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from ganmodel import runs

    check_metrics(metrics)
    name = cfg.model_name
    if "'" in name or "`" in name:
        raise GanModelError(f"register.model_name: quotes are not allowed in a model name ({name!r})")
    weights_hash = generator_weights_hash(generator_path)
    active = mlflow.active_run()
    run_ids = dict(run_ids)
    if "register" not in run_ids and active is not None:
        run_ids["register"] = active.info.run_id
    tags = version_tags(metrics, cfg, weights_hash=weights_hash, run_ids=run_ids, params=params,
                        git_commit=git_commit or runs.git_commit("."))

    client = MlflowClient(mlflow.get_tracking_uri())  # the store the model is logged into
    existing = find_version(client, name, weights_hash)
    champion = get_alias(client, name, CHAMPION)
    if existing is None:
        if active is None:
            raise GanModelError("register: no active MLflow run to log the model into")
        from ganmodel.serving import log_generator_model

        info = log_generator_model(generator_path)
        # mlflow.register_model (not client.create_model_version) also links the logged model
        # to the new version (the UI's "registered versions" of the logged model).
        mv = mlflow.register_model(info.model_uri, name, tags=tags)
        version, created = str(mv.version), True
    else:
        version, created = str(existing.version), False
        for k, v in tags.items():
            if existing.tags.get(k) != v:
                client.set_model_version_tag(name, version, k, v)

    # Described after register_model creates the model: creating it first made MLflow announce
    # "Registered model ... already exists" on the very first registration.
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_DESCRIPTION)
    d = decide(metrics, cfg, champion, version)
    client.set_model_version_tag(name, version, DECISION_TAG, d.decision)
    client.set_model_version_tag(name, version, REASON_TAG, d.reason)
    if d.decision == CHAMPION:
        if champion is not None and str(champion.version) != version:
            client.set_model_version_tag(name, str(champion.version), SUPERSEDED_TAG, version)
        client.set_registered_model_alias(name, CHAMPION, version)
        challenger = get_alias(client, name, CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        champion_version = version
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)
        champion_version = str(champion.version) if champion is not None else None

    what = "new version" if created else "existing version (same weights)"
    print(f"register: {name} v{version} ({what}) -> {d.decision}: {d.reason}")
    return {"model_name": name, "version": int(version), "decision": d.decision, "reason": d.reason,
            "champion_version": int(champion_version) if champion_version is not None else None,
            "weights_hash": weights_hash, "created": created}
