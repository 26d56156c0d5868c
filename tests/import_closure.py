"""dvc.yaml's side of the dependency tests (test_stage_deps, test_identity): the scripts a stage
runs, its declared deps, and which modules they leave undeclared or declare for nothing. The
modules a script runs come from `ganmodel.codebase` (`Package`), which the package itself uses to
hash its evaluation code; test_structure reads imports with `imported_names`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

from ganmodel.codebase import Package, imported_names

__all__ = ["Package", "covered", "dep_paths", "imported_names", "stage_scripts", "stale", "undeclared"]


def stage_scripts(cmd: str | list[str], root: Path) -> list[Path]:
    """The Python files a dvc.yaml stage command runs (`python pipelines/x.py ...`)."""
    words = shlex.split(cmd if isinstance(cmd, str) else " ".join(cmd))
    return [root / w for w in words if w.endswith(".py") and (root / w).is_file()]


def dep_paths(stage: dict) -> list[str]:
    """A stage's deps as paths (a dep is a path, or a one-key mapping {path: {options}})."""
    return [(next(iter(d)) if isinstance(d, dict) else str(d)).rstrip("/") for d in stage.get("deps") or []]


def covered(rel: str, deps: Iterable[str]) -> bool:
    """Is the file `rel` a dep, itself or through one of its folders?"""
    return any(rel == d or rel.startswith(d + "/") for d in deps)


def undeclared(pkg: Package, modules: Iterable[str], deps: list[str]) -> list[str]:
    """The files of `modules` that run code and that `deps` does not cover."""
    return sorted(pkg.rel(m) for m in modules if not pkg.runs_nothing(m) and not covered(pkg.rel(m), deps))


def stale(pkg: Package, modules: Iterable[str], deps: list[str]) -> list[str]:
    """The deps inside the package that cover a module `modules` lacks: a file no closure reaches,
    or a folder holding one (a change to it would re-run the stage for nothing)."""
    reached = {pkg.rel(m) for m in modules}
    out = []
    for d in deps:
        if d != pkg.name and not d.startswith(pkg.name + "/"):
            continue
        under = [pkg.rel(m) for m in pkg.modules if covered(pkg.rel(m), [d]) and not pkg.runs_nothing(m)]
        if not under or any(f not in reached for f in under):
            out.append(d)
    return out
