"""Registering the evaluated generator: check that the weights are the ones evaluated, register
the train run's logged model once per weights, apply the gate (`ganmodel.registry.gate`) and move
the aliases. Every MLflow call goes through `ganmodel.tracking.models`."""

from __future__ import annotations

import os
from typing import Any

from ganmodel.artifacts import GENERATOR, file_weights_hash
from ganmodel.config import RegisterParams
from ganmodel.errors import GanModelError
from ganmodel.registry.card import SampleSheet, model_card
from ganmodel.registry.gate import (
    CHALLENGER,
    CHAMPION,
    DECISION_TAG,
    LEGACY_TAG_PREFIXES,
    MODEL_DESCRIPTION,
    REASON_TAG,
    RUN_TAG,
    SUPERSEDED_TAG,
    Champion,
    Protocol,
    check_metrics,
    decide,
    required_classes,
    version_tags,
)
from ganmodel.tracking import models
from ganmodel.tracking.models import WEIGHTS_HASH_TAG


def check_evaluated(generator_path: str | os.PathLike[str], metrics: dict[str, Any], source: str) -> str:
    """The weights hash of `generator_path`, after checking that the evaluation (`metrics`, from
    `source`) describes exactly these weights; a one-line error otherwise."""
    mine = file_weights_hash(generator_path, GENERATOR)
    evaluated = str(metrics["generator_hash"])
    if mine != evaluated:
        raise GanModelError(f"{generator_path}: weights {mine[:12]} were not evaluated ({source} describes "
                            f"generator {evaluated[:12]}); re-run the evaluate stage")
    return mine


def check_weights(generator_path: str | os.PathLike[str], metrics: dict[str, Any], logged_model: Any,
                  source: str) -> str:
    """`check_evaluated`, and the train run's logged model must hold the same weights."""
    mine = check_evaluated(generator_path, metrics, source)
    logged = (logged_model.tags or {}).get(WEIGHTS_HASH_TAG)
    if logged != mine:
        raise GanModelError(f"logged model {logged_model.model_id}: weights {str(logged)[:12]} differ from "
                            f"{generator_path} ({mine[:12]}); re-run the train stage")
    return mine


def current_champion(name: str) -> Champion | None:
    """The champion as the gate sees it: the protocol its version's tags record, and its FID from
    the evaluate run those tags name (`run_id.evaluate`), which is the evaluation that protocol
    describes. Never the newest `fid` on its logged model: evaluating the model again under another
    protocol would otherwise hold new versions to figures of a different protocol."""
    mv = models.get_alias(name, CHAMPION)
    if mv is None:
        return None
    run_id = mv.tags.get(RUN_TAG.format("evaluate"))
    fid = models.run_metric(run_id, "fid") if run_id else None
    return Champion(str(mv.version), Protocol.from_tags(mv.tags), fid)


def gate_text(metrics: dict[str, Any], cfg: RegisterParams) -> dict[str, str]:
    """The gate's threshold on each figure it checks, as the model card shows it."""
    out = {"fid_ratio": f"≤ {cfg.max_fid_ratio:g}", "data_copying": f"≥ {cfg.min_data_copying:g}"}
    need = required_classes(metrics, cfg)
    if "classes_covered" in metrics and need is not None:
        out["classes_covered"] = f"≥ {need}"
    return out


def recipe_of(logged_model: Any) -> dict[str, str]:
    """The train params the train run logged with its model, without the `train.` prefix."""
    params = dict(getattr(logged_model, "params", None) or {})
    return {k.removeprefix("train."): v for k, v in params.items() if k.startswith("train.")}


def register_generator(generator_path: str | os.PathLike[str], metrics: dict[str, Any], cfg: RegisterParams,
                       *, model_id: str, run_ids: dict[str, str], git_commit: str,
                       source: str = "evaluation metrics", data_meta: dict[str, Any] | None = None,
                       samples: SampleSheet | None = None) -> dict[str, Any]:
    """Register the logged model `model_id` (the train run's) once per weights and apply the gate.

    Refuses, before anything is registered, metrics that lack what the gate needs and weights
    other than the evaluated ones. Describes the version with its model card (`card.model_card`:
    the prepared data's `data_meta`, the logged recipe, `metrics`, the `samples` sheet), anew on
    every registration. Prints the decision. Returns {model_name, version, decision, reason,
    champion_version, weights_hash, created}.
    """
    check_metrics(metrics, source)
    name = cfg.model_name
    if "'" in name or "`" in name:
        raise GanModelError(f"register.model_name: quotes are not allowed in a model name ({name!r})")
    logged_model = models.get_logged_model(model_id)
    weights_hash = check_weights(generator_path, metrics, logged_model, source)
    tags = version_tags(metrics, cfg, weights_hash=weights_hash, run_ids=run_ids, git_commit=git_commit)

    existing = models.find_version(name, weights_hash)
    champion = current_champion(name)
    if existing is None:
        mv = models.register_model(f"models:/{model_id}", name, tags)
        version, created = str(mv.version), True
    else:
        version, created = str(existing.version), False
        models.set_version_tags(name, version, tags, current=existing.tags)
        legacy = [k for k in existing.tags if k.startswith(LEGACY_TAG_PREFIXES)]
        models.delete_version_tags(name, version, legacy)

    # Described after register_model creates the model: creating it first made MLflow announce
    # "Registered model ... already exists" on the very first registration.
    models.describe_model(name, MODEL_DESCRIPTION)
    models.describe_version(name, version, model_card(
        name=name, version=version, data=data_meta, recipe=recipe_of(logged_model), metrics=metrics,
        samples=samples, gate=gate_text(metrics, cfg)))
    d = decide(metrics, cfg, champion, version)
    models.set_version_tags(name, version, {DECISION_TAG: d.decision, REASON_TAG: d.reason})
    if d.decision == CHAMPION:
        if champion is not None and champion.version != version:
            models.set_version_tags(name, champion.version, {SUPERSEDED_TAG: version})
        models.set_alias(name, CHAMPION, version)
        challenger = models.get_alias(name, CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            models.delete_alias(name, CHALLENGER)
        champion_version = version
    else:
        models.set_alias(name, CHALLENGER, version)
        champion_version = champion.version if champion is not None else None

    what = "new version" if created else "existing version (same weights)"
    print(f"register: {name} v{version} ({what}) -> {d.decision}: {d.reason}")
    return {"model_name": name, "version": int(version), "decision": d.decision, "reason": d.reason,
            "champion_version": int(champion_version) if champion_version is not None else None,
            "weights_hash": weights_hash, "created": created}
