"""The identity of a training run: the Ray run name under which the train stage checkpoints, and so
which checkpoints a re-run resumes.

It is derived from exactly what DVC tracks for the train stage in dvc.yaml: the params sections
the stage lists (`train`, `tracking`), the data (the prepared splits' data hash), the classifier
(its weights hash) and the code (every dependency of the stage that no stage produces, hashed by
content). So whenever DVC would re-run the stage for a change, the run starts fresh, and a re-run
with unchanged inputs (after a kill, or `dvc repro -f`) resumes the same checkpoints.

The only params left out are those that say where and how robustly the run executes, never what it
computes (`EXECUTION_KEYS`): changing them must not orphan a run in progress.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from ganmodel.errors import GanModelError

EXECUTION_KEYS = frozenset({"ray_address", "storage_path", "max_failures", "keep_checkpoints",
                            "checkpoint_every"})
TRAIN_STAGE = "train"


def _dep_path(dep: Any) -> str:
    # A dvc.yaml dep is a path, or a one-key mapping {path: {options}}.
    return next(iter(dep)) if isinstance(dep, dict) else str(dep)


def stage_inputs(dvc_yaml: str | os.PathLike[str], stage: str = TRAIN_STAGE) -> tuple[list[str], list[str]]:
    """(code paths, params sections) DVC tracks for `stage`: its deps that no stage outputs, and
    the params sections it lists."""
    p = Path(dvc_yaml)
    if not p.is_file():
        raise GanModelError(f"{p}: not found; run the {stage} stage from the repository root")
    try:
        stages = (yaml.safe_load(p.read_text()) or {})["stages"]
        spec = stages[stage]
    except (yaml.YAMLError, KeyError, TypeError):
        raise GanModelError(f"{p}: expected a stage {stage!r} under 'stages'") from None
    produced = set()
    for other in stages.values():
        for key in ("outs", "metrics", "plots"):
            produced.update(_dep_path(o) for o in (other.get(key) or []))
    code = [d for d in map(_dep_path, spec.get("deps") or []) if d not in produced]
    sections = [_dep_path(s) for s in (spec.get("params") or [])]
    return code, sections


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                  and f.suffix != ".pyc")


def code_hash(paths: list[str], root: str | os.PathLike[str] = ".") -> str:
    """sha256 over the relative names and bytes of every file under `paths` (caches skipped)."""
    base = Path(root)
    h = hashlib.sha256()
    for rel in sorted(paths):
        p = base / rel
        if not p.exists():
            raise GanModelError(f"dvc.yaml: train stage dependency {rel} does not exist")
        for f in _files(p):
            h.update(f.relative_to(base).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def run_name(params: dict[str, Any], data_hash: str, classifier_hash: str, code: str) -> str:
    """`train-<12 hex>` from the params sections (a mapping section -> values), data, classifier
    and code hashes; execution-only `train` keys are dropped."""
    sections = {k: ({kk: vv for kk, vv in v.items() if kk not in EXECUTION_KEYS} if k == "train" else v)
                for k, v in params.items()}
    key = json.dumps({"params": sections, "data": data_hash, "classifier": classifier_hash, "code": code},
                     sort_keys=True, default=str)
    return "train-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def train_run_name(all_params: dict[str, Any], data_hash: str, classifier_hash: str,
                   dvc_yaml: str | os.PathLike[str] = "dvc.yaml") -> str:
    """The run name of the train stage as dvc.yaml (beside the working directory) declares it."""
    code, sections = stage_inputs(dvc_yaml)
    missing = [s for s in sections if s not in all_params]
    if missing:
        raise GanModelError(f"{dvc_yaml}: the train stage lists params section {missing[0]!r}, "
                            "which params.yaml lacks")
    return run_name({s: all_params[s] for s in sections}, data_hash, classifier_hash,
                    code_hash(code, Path(dvc_yaml).parent))


def package_hash() -> str:
    """sha256 of this `ganmodel` package's source: a Ray worker must run the driver's code."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        if "__pycache__" not in f.parts:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()
