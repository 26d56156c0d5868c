"""The package's own source as data: which of its modules a module imports (at any depth,
function-level imports included, parent packages' `__init__` too) and a content hash of them.

Figures and runs are tied to the code that made them by these hashes (the evaluation code of the
register gate's protocol), derived from the imports rather than from a list kept by hand.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

PACKAGE = "ganmodel"
ROOT = Path(__file__).resolve().parent  # this package's folder


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its `__init__.py`)."""
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        parts = [PACKAGE, *f.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _resolve(name: str) -> str | None:
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> set[str]:
    """The package modules that module `name` imports anywhere in its file, with the parent
    packages each import runs (importing a.b.c runs a/__init__ and a/b/__init__)."""
    path = modules()[name]
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for t in targets:
            if (t == PACKAGE or t.startswith(PACKAGE + ".")) and (r := _resolve(t)):
                parts = r.split(".")
                out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    out.discard(name)
    return out


def closure(names: Iterable[str]) -> set[str]:
    """`names` and every package module they import, transitively."""
    todo, seen = list(names), set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(imports_of(m) - seen)
    return seen


def source_hash(names: Iterable[str]) -> str:
    """sha256 over the relative paths and bytes of the modules `names`."""
    h = hashlib.sha256()
    for name in sorted(set(names)):
        path = modules()[name]
        h.update(path.relative_to(ROOT.parent).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def code_hash(module: str) -> str:
    """`source_hash` of `module` and everything it imports from the package."""
    return source_hash(closure([module]))
