"""The model card: a registered version's description, in markdown (the MLflow UI renders it).

What the version was trained on (the prepared data's meta.json), how (the train recipe the
logged model recorded), how good it is (the evaluate stage's headline figures beside their real
floors and the gate's thresholds) and where its sample sheet is. A pure function of those
dicts: missing keys (unlabelled data has no class figures; older files lack fields) drop their
line, never the card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# MLflow stores a version's description in a VARCHAR(5000) column (model_versions.description in
# mlflow/store/model_registry/dbmodels/models.py): MySQL and PostgreSQL refuse longer ones.
MAX_CARD_CHARS = 5000
CLASS_ROWS = (20, 10, 5, 0)  # classes listed, fewer until the card fits
HASH_CHARS = 12

# (metric key, label, floor key, gate threshold key of `gate`): the headline, in this order.
FIGURES = (
    ("fid", "FID", "fid_floor", None),
    ("fid_ratio", "FID / floor", None, "fid_ratio"),
    ("kid_mean", "KID", "kid_mean_floor", None),
    ("is_mean", "Inception score", "is_mean_floor", None),
    ("precision", "precision", "precision_floor", None),
    ("recall", "recall", "recall_floor", None),
    ("density", "density", "density_floor", None),
    ("coverage", "coverage", "coverage_floor", None),
    ("classes_covered", "classes covered", "classes_covered_floor", "classes_covered"),
    ("class_kl", "class KL", "class_kl_floor", None),
    ("cond_accuracy", "conditional accuracy", "cond_accuracy_floor", None),
    ("cas", "CAS", "cas_floor", None),
    ("data_copying", "data copying", "data_copying_floor", "data_copying"),
)
RECIPE_KEYS = ("loss", "batch_size", "lr_g", "lr_d", "betas", "z_dim", "d_steps", "r1_gamma", "augment",
               "ema_decay", "spectral_norm", "mbstd_group", "precision", "seed")


@dataclass(frozen=True)
class SampleSheet:
    """The evaluate run's sample sheet: its run, experiment and artifact path."""

    run_id: str
    experiment_id: str
    artifact_path: str

    @property
    def uri(self) -> str:
        return f"runs:/{self.run_id}/{self.artifact_path}"

    @property
    def ui_link(self) -> str:
        """The artifact's page in the MLflow UI (a hash route, relative to the UI's root)."""
        return f"#/experiments/{self.experiment_id}/runs/{self.run_id}/artifactPath/{self.artifact_path}"


def _md(text: Any) -> str:
    """`text` with markdown's special characters escaped (class names are file names)."""
    out = str(text).replace("\n", " ").replace("\r", " ")
    for ch in "\\`*_[]<>|#":
        out = out.replace(ch, "\\" + ch)
    return out


def _code(text: Any) -> str:
    """`text` for a code span: backticks and line breaks would end it."""
    return str(text).replace("`", "'").replace("\n", " ").replace("\r", " ")


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return _md(v)
    if not math.isfinite(v):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e6:
        return f"{int(v):,}"
    return f"{v:.4g}"


def _shape_text(shape: Any) -> str:
    try:
        c, h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        return ""
    colour = {1: "greyscale", 3: "RGB"}.get(c, f"{c} channels")
    return f"{h}x{w} px, {colour}"


def _data_section(data: Mapping[str, Any], metrics: Mapping[str, Any], class_rows: int) -> list[str]:
    name = data.get("dataset", metrics.get("dataset", "unknown"))
    source = data.get("source") or {}
    where = f" from `{_code(source['raw_dir'])}`" if source.get("raw_dir") else ""
    kind = f" ({_md(source['kind'])})" if source.get("kind") else ""
    digest = data.get("data_hash", metrics.get("data_hash"))
    lines = ["#### Data", "",
             f"- dataset **{_md(name)}**{where}{kind}"
             + (f", data hash `{_code(str(digest)[:HASH_CHARS])}`" if digest else "")]
    if shape := _shape_text(data.get("image_shape", [1, 28, 28] if data else None)):
        resize = f", resized by {_md(data['resize'])}" if data.get("resize") else ""
        lines.append(f"- images {shape}{resize}")
    if splits := data.get("splits"):
        lines.append("- " + ", ".join(f"{_num(n)} {_md(s)}" for s, n in splits.items()))
    classes = list(data.get("classes") or [])
    if data and (not data.get("labelled", True) or len(classes) < 2):
        lines.append("- unlabelled (no classes): label figures are not computed")
    elif classes:
        counts = data.get("class_counts") or {}
        split_names = [s for s in ("train", "val", "test") if s in counts]
        lines.append(f"- {len(classes)} classes")
        if class_rows and split_names:
            lines += ["", "| class | " + " | ".join(split_names) + " |",
                      "|---|" + "---:|" * len(split_names)]
            for i, c in enumerate(classes[:class_rows]):
                cells = [_num(counts[s].get(str(i), 0)) for s in split_names]
                lines.append(f"| {_md(c)} | " + " | ".join(cells) + " |")
            if len(classes) > class_rows:
                blank = " | ".join("" for _ in split_names)
                lines.append(f"| ... {len(classes) - class_rows} more | {blank} |")
    return lines


def _recipe_section(recipe: Mapping[str, Any]) -> list[str]:
    if not recipe:
        return ["#### Recipe", "", "- not recorded with the logged model"]
    head = [f"preset **{_md(recipe.get('preset', 'custom'))}**", f"arch `{_code(recipe.get('arch', '?'))}`"]
    cond = str(recipe.get("conditional", "")).lower() == "true"
    head.append("conditional" if cond else "unconditional")
    if "epochs" in recipe:
        head.append(f"{_md(recipe['epochs'])} epochs")
    keys = ", ".join(f"`{k}` {_md(recipe[k])}" for k in RECIPE_KEYS if k in recipe)
    return ["#### Recipe", "", "- " + ", ".join(head)] + ([f"- {keys}"] if keys else [])


def _figures_section(metrics: Mapping[str, Any], gate: Mapping[str, str]) -> list[str]:
    n = metrics.get("n_samples")
    feat = f", {_md(metrics['feature_network'])} features" if metrics.get("feature_network") else ""
    lines = ["#### Figures", "",
             (f"N = {_num(n)} generated images against held-out real ones" if n is not None
              else "Generated images against held-out real ones")
             + (f", eval seed {_md(metrics['eval_seed'])}" if "eval_seed" in metrics else "") + feat
             + ". Real floor: the same figure with held-out real images in place of generated ones.",
             "", "| figure | model | real floor | gate |", "|---|---:|---:|---|"]
    for key, label, floor_key, gate_key in FIGURES:
        if key not in metrics:
            continue
        value = _num(metrics[key])
        if key == "kid_mean" and "kid_std" in metrics:
            value += f" ± {_num(metrics['kid_std'])}"
        floor = _num(metrics[floor_key]) if floor_key and floor_key in metrics else ""
        lines.append(f"| {label} | {value} | {floor} | {_md(gate.get(gate_key, '')) if gate_key else ''} |")
    skipped = metrics.get("skipped")
    if isinstance(skipped, Mapping) and skipped:
        lines += ["", "Skipped: " + "; ".join(f"{_md(k)} ({_md(v)})" for k, v in skipped.items())]
    return lines


def model_card(*, name: str, version: str, data: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None,
               metrics: Mapping[str, Any], samples: SampleSheet | None = None,
               gate: Mapping[str, str] | None = None) -> str:
    """The markdown card of version `version` of `name`.

    `data`: the prepared meta.json (None: only the metrics' data hash is known); `recipe`: the
    train params the logged model recorded, without their `train.` prefix; `metrics`: the evaluate
    stage's JSON; `gate`: each gated figure's threshold as text (e.g. {"fid_ratio": "<= 5"}).
    At most `MAX_CARD_CHARS` characters: long class lists are cut first."""
    shape = _shape_text((data or {}).get("image_shape", [1, 28, 28] if data else None))
    for rows in CLASS_ROWS:
        lines = [f"### {_md(name)} v{_md(version)}", "",
                 "GAN generator: latent vectors [n, z_dim] in, images [n, C, H, W] in [-1, 1] out"
                 + (f" ({shape})" if shape else "") + ".", ""]
        lines += _data_section(data or {}, metrics, rows) + [""]
        lines += _recipe_section(recipe or {}) + [""]
        lines += _figures_section(metrics, gate or {}) + [""]
        if samples is not None:
            lines += ["#### Samples", "",
                      f"[{_md(samples.artifact_path)}]({samples.ui_link}) of the evaluate run "
                      f"(`{samples.uri}`)", ""]
        card = "\n".join(lines)
        if len(card) <= MAX_CARD_CHARS:
            return card
    return card[: MAX_CARD_CHARS - 2] + "\n…"
