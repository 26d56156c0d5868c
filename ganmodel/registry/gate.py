"""The quality gate that moves the `champion` alias, as pure functions (no MLflow here).

One registered model (`register.model_name`); one version per distinct set of generator weights
(keyed on the tag `weights_hash`, `ganmodel.artifacts.weights_hash` of the weights). Two aliases:

- `champion`: the version to ship. It moves to a new version only if that version passes every
  threshold of `RegisterParams` (fid_ratio <= max_fid_ratio, classes_covered >= the class rule's
  count, data_copying >= min_data_copying: it does not copy its training images)
  **and** has a strictly lower FID than the current champion *under the same evaluation protocol*
  (same data_hash, classifier_hash, n_samples, eval_seed, eval_code_hash and conditional flag:
  FID is biased at finite N and depends on the feature network and on the code that samples and
  compares, so numbers from different protocols do not compare). With no champion yet, passing
  the gate is enough.
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

The evaluation metrics live on the logged model (its page shows them). The champion's figures
are read from the evaluate run recorded on the champion version (tag `run_id.evaluate`), the run
its protocol tags describe, never from the newest metric on the model: evaluating the same model
again under another protocol must not change what the champion is held to. Version tags keep
lineage and the gate's decision: `weights_hash`, `protocol.*`,
`data.hash`, `classifier.hash`, `git.commit`, `run_id.<stage>` for prepare/classifier/train/
evaluate/register, and `gate.decision` / `gate.reason` / `gate.thresholds`.

The class rule (`required_classes`) applies only where there are classes: every class the data
has, up to `min_classes_covered`, i.e. min(min_classes_covered, n_classes) with the evaluation's
`n_classes` (a folder of 4 classes needs all 4; MNIST's 10 need the default 10). For unlabelled
data (evaluate skipped `class_coverage`) there is nothing to cover: the rule is skipped and the
decision's reason and `gate.thresholds` say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ganmodel.config import RegisterParams
from ganmodel.errors import GanModelError
from ganmodel.tracking.models import WEIGHTS_HASH_TAG
from ganmodel.tracking.runs import CLASSIFIER_HASH_TAG, DATA_HASH_TAG, GIT_TAG

CHAMPION = "champion"
CHALLENGER = "challenger"
# Tags of versions registered before metrics moved to the logged model: dropped on re-registration.
LEGACY_TAG_PREFIXES = ("metric.", "param.")
RUN_TAG = "run_id.{}"
PROTOCOL_TAG = "protocol.{}"
MODEL_DESCRIPTION = ("GAN generator: latent vectors [n, z_dim] -> images [n, C, H, W] in [-1, 1]; "
                     "each version's description is its model card (data, recipe, figures)")
DECISION_TAG = "gate.decision"
REASON_TAG = "gate.reason"
THRESHOLDS_TAG = "gate.thresholds"
SUPERSEDED_TAG = "gate.superseded_by"

# Fields that define the evaluation protocol; metrics only compare when all of them match.
PROTOCOL_FIELDS = ("data_hash", "classifier_hash", "n_samples", "eval_seed", "eval_code_hash", "conditional")
REQUIRED_METRICS = ("fid", "fid_ratio", "data_copying", "generator_hash", *PROTOCOL_FIELDS)
CLASS_RULE_SKIPPED = "class rule skipped: unlabelled data, no classes to cover"
STAGES = ("prepare", "classifier", "train", "evaluate", "register")


@dataclass(frozen=True)
class Protocol:
    """What makes two evaluations comparable: the data, the feature network, N, the seed, the
    evaluation code and whether the generator was asked for classes."""

    data_hash: str
    classifier_hash: str
    n_samples: int
    eval_seed: int
    eval_code_hash: str
    conditional: bool

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> Protocol:
        return cls(str(metrics["data_hash"]), str(metrics["classifier_hash"]),
                   _as_int(metrics["n_samples"], "n_samples"), _as_int(metrics["eval_seed"], "eval_seed"),
                   str(metrics["eval_code_hash"]), _as_bool(metrics["conditional"], "conditional"))

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
                short = (lambda v: v[:12]) if isinstance(a, str) else (lambda v: str(v).lower())
                out.append(f"{f} {short(a)} vs {short(b)}")
        return out

    def tags(self) -> dict[str, str]:
        def text(v: Any) -> str:
            return str(v).lower() if isinstance(v, bool) else str(v)

        return {PROTOCOL_TAG.format(f): text(getattr(self, f)) for f in PROTOCOL_FIELDS}


@dataclass(frozen=True)
class Champion:
    """What the gate needs of the current champion: its version, the protocol it was evaluated
    under (None if it has none recorded) and its FID under that protocol (None if unknown)."""

    version: str
    protocol: Protocol | None
    fid: float | None


@dataclass(frozen=True)
class Decision:
    decision: str  # CHAMPION or CHALLENGER
    reason: str


def _as_bool(value: Any, what: str) -> bool:
    """A JSON boolean, or its string form in a tag."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise GanModelError(f"{what}: expected true or false, got {value!r}")


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
    if "classes_covered" not in metrics and not _unlabelled(metrics):
        missing.append("classes_covered")
    if missing:
        raise GanModelError(f"{source}: missing {', '.join(missing)} (needed by the register gate)")
    if not isinstance(metrics["generator_hash"], str) or len(metrics["generator_hash"]) != 64:
        raise GanModelError(f"{source}: generator_hash must be a sha256 hex digest, got "
                            f"{metrics['generator_hash']!r}")
    for k in ("fid", "fid_ratio", "classes_covered", "data_copying"):
        if k not in metrics:  # classes_covered of unlabelled data
            continue
        v = metrics[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise GanModelError(f"{source}: {k} must be a finite number, got {v!r}")
    Protocol.from_metrics(metrics)


def _unlabelled(metrics: dict[str, Any]) -> bool:
    """Whether the evaluation had no classes: it skipped the class coverage (`skipped`)."""
    skipped = metrics.get("skipped")
    return isinstance(skipped, dict) and "class_coverage" in skipped


def required_classes(metrics: dict[str, Any], cfg: RegisterParams) -> int | None:
    """The class rule: classes a generator must cover, min(min_classes_covered, n_classes) (every
    class the data has, up to the threshold); None for unlabelled data (the rule is skipped).
    Metrics without `n_classes` (evaluations before it was recorded) need min_classes_covered."""
    if _unlabelled(metrics):
        return None
    n = metrics.get("n_classes")
    if isinstance(n, int | float) and not isinstance(n, bool) and n > 0:
        return min(cfg.min_classes_covered, int(n))
    return cfg.min_classes_covered


def gate_failures(metrics: dict[str, Any], cfg: RegisterParams) -> list[str]:
    """The thresholds of `RegisterParams` that `metrics` misses (empty: the gate passes)."""
    out = []
    if metrics["fid_ratio"] > cfg.max_fid_ratio:
        out.append(f"fid_ratio {metrics['fid_ratio']:.3g} > max_fid_ratio {cfg.max_fid_ratio:g}")
    need = required_classes(metrics, cfg)
    if need is not None and metrics["classes_covered"] < need:
        threshold = f"min_classes_covered {cfg.min_classes_covered}"
        rule = (threshold if need == cfg.min_classes_covered
                else f"{need} required (every class the data has; {threshold})")
        out.append(f"classes_covered {metrics['classes_covered']:g} < {rule}")
    if metrics["data_copying"] < cfg.min_data_copying:
        out.append(f"data_copying {metrics['data_copying']:.3g} < min_data_copying {cfg.min_data_copying:g} "
                   "(its samples are closer to training images than unseen real images are: it copies)")
    return out


def thresholds(cfg: RegisterParams, metrics: dict[str, Any] | None = None) -> str:
    """The gate's thresholds, with the class rule as it applies to `metrics` (when given)."""
    need = required_classes(metrics, cfg) if metrics is not None else cfg.min_classes_covered
    classes = CLASS_RULE_SKIPPED if need is None else f"classes_covered >= {need}"
    return f"fid_ratio <= {cfg.max_fid_ratio:g}, {classes}, data_copying >= {cfg.min_data_copying:g}"


def decide(metrics: dict[str, Any], cfg: RegisterParams, champion: Champion | None,
           version: str | None = None) -> Decision:
    """The gate, as a pure function of the new metrics, the thresholds and the current champion.
    `version`: the new version's number when it already exists (re-registration). For unlabelled
    data the reason ends by saying that the class rule was skipped."""
    d = _decide(metrics, cfg, champion, version)
    if required_classes(metrics, cfg) is None and CLASS_RULE_SKIPPED not in d.reason:
        return Decision(d.decision, f"{d.reason}; {CLASS_RULE_SKIPPED}")
    return d


def _decide(metrics: dict[str, Any], cfg: RegisterParams, champion: Champion | None,
            version: str | None) -> Decision:
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
        return Decision(CHAMPION, f"no champion yet and the gate passes ({thresholds(cfg, metrics)})")
    theirs = champion.protocol
    if theirs is None:
        return Decision(CHALLENGER, f"not compared: {champ} has no recorded evaluation protocol; "
                                    f"{champ} left alone")
    diff = Protocol.from_metrics(metrics).differences(theirs)
    if diff:
        return Decision(CHALLENGER, f"not compared: evaluation protocol differs from {champ} "
                                    f"({'; '.join(diff)}); {champ} left alone")
    if champion.fid is None:
        return Decision(CHALLENGER, f"not compared: {champ} has no recorded fid; {champ} left alone")
    their_fid = champion.fid
    fid = float(metrics["fid"])
    if fid < their_fid:
        return Decision(CHAMPION, f"gate passes and fid {fid:.4g} beats {champ} fid {their_fid:.4g} "
                                  "under the same protocol")
    return Decision(CHALLENGER, f"gate passes but fid {fid:.4g} does not beat {champ} fid {their_fid:.4g}; "
                                f"{champ} unchanged")


def version_tags(metrics: dict[str, Any], cfg: RegisterParams, *, weights_hash: str,
                 run_ids: dict[str, str], git_commit: str) -> dict[str, str]:
    """Lineage tags of a version (see the module docstring); the gate's decision is added apart."""
    tags = {WEIGHTS_HASH_TAG: weights_hash, GIT_TAG: git_commit,
            DATA_HASH_TAG: str(metrics["data_hash"]), CLASSIFIER_HASH_TAG: str(metrics["classifier_hash"]),
            THRESHOLDS_TAG: thresholds(cfg, metrics), **Protocol.from_metrics(metrics).tags()}
    for stage, run_id in run_ids.items():
        tags[RUN_TAG.format(stage)] = str(run_id)
    return tags
