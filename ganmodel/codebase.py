"""The package's own source as data, read statically (nothing is imported): which of its modules a
script or module runs, at any depth. Imports count wherever they are (function-level too, relative
ones resolved), with the parent packages' `__init__` that importing a submodule runs, module names
written as strings (`importlib`), and files loaded or copied by path
(`Path(__file__).with_name("model_code.py")`, a tuple of `.py` files and package folders).

Code is tied to what it made by hashes of these closures, derived from the imports rather than
from a list kept by hand: the evaluation code of the register gate's protocol
(`evaluation.protocol.evaluation_code_hash`), and the tests that check dvc.yaml's deps.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "ganmodel"
ROOT = Path(__file__).resolve().parents[1]  # the directory holding the package


PY_PATH = re.compile(r"[\w./-]+\.py")


def _string(node: ast.AST) -> str | None:
    """The value of a string constant node, else None."""
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def imported_names(path: Path, module: str | None) -> set[str]:
    """Every module named by an import statement anywhere in the file (function-level too), with
    relative imports resolved against `module` (None: a script, which has none); `from a import b`
    names both a and a.b, since b may be a module."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if module is None:
                    raise ValueError(f"{path}: a relative import outside a package")
                anchor = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


@dataclass(frozen=True)
class Package:
    """The modules of package `name` under the repository `root`, by dotted name."""

    root: Path
    name: str
    modules: dict[str, Path]

    @classmethod
    def scan(cls, root: Path, name: str) -> Package:
        """Every `.py` file of `root/name` (caches skipped)."""
        mods = {}
        for f in sorted((root / name).rglob("*.py")):
            if "__pycache__" not in f.parts:
                parts = list(f.relative_to(root).with_suffix("").parts)
                mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
        return cls(root, name, mods)

    def rel(self, module: str) -> str:
        """The module's file relative to the repository root, as dvc.yaml writes it."""
        return self.modules[module].relative_to(self.root).as_posix()

    def _resolve(self, target: str) -> str | None:
        # `from a.b import name` names a.b.name, which is a module or an attribute of a.b.
        while target and target not in self.modules:
            target = target.rpartition(".")[0]
        return target or None

    def _with_parents(self, module: str) -> set[str]:
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        parts = module.split(".")
        return {p for i in range(1, len(parts) + 1) if (p := ".".join(parts[:i])) in self.modules}

    def _named_modules(self, path: Path, module: str | None) -> set[str]:
        """Modules named by the file's import statements and by strings that spell a module."""
        names = imported_names(path, module)
        spelled = re.compile(rf"{re.escape(self.name)}(\.\w+)+")
        for node in ast.walk(ast.parse(path.read_text())):
            if (text := _string(node)) and spelled.fullmatch(text):
                names.add(text)  # importlib.import_module("ganmodel.x") and the like
        return {m for n in names if n.split(".")[0] == self.name and (m := self._resolve(n))}

    def _loaded_by_path(self, path: Path) -> set[str]:
        """Modules the file names by path: a string that is a `.py` path, or a package folder
        listed beside one (a bare word like "classifier" is a params section or an artifact kind
        far more often than a folder). Each is looked for beside the file, in the package and in
        the repository root; what exists inside the package counts."""
        tree = ast.parse(path.read_text())
        strings: set[str] = set()
        for node in ast.walk(tree):
            if (text := _string(node)) and PY_PATH.fullmatch(text):
                strings.add(text)
            elif isinstance(node, ast.Tuple | ast.List | ast.Set):
                items = [t for e in node.elts if (t := _string(e))]
                if any(PY_PATH.fullmatch(s) for s in items):
                    strings.update(items)
        pkg_dir = self.root / self.name
        out: set[str] = set()
        for s in strings:
            for base in (path.parent, pkg_dir, self.root):
                target = (base / s).resolve()
                if not target.is_relative_to(pkg_dir.resolve()) or not target.exists():
                    continue
                for mod, f in self.modules.items():
                    f = f.resolve()
                    if f == target or (target.is_dir() and f.is_relative_to(target)):
                        out.add(mod)
        return out

    def references(self, path: Path, module: str | None = None) -> set[str]:
        """The package's modules that running `path` (module `module`, None for a script) runs
        directly: what it imports, with their parents, and what it loads by path."""
        direct = self._named_modules(path, module) | self._loaded_by_path(path)
        return set().union(*(self._with_parents(m) for m in direct)) if direct else set()

    def closure(self, scripts: Iterable[Path] = (), modules: Iterable[str] = ()) -> set[str]:
        """Every module of the package that running `scripts`, or importing `modules`, may run, at
        any depth (`modules` themselves included)."""
        todo = [m for s in scripts for m in self.references(s)] + list(modules)
        seen: set[str] = set()
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(self.references(self.modules[m], m) - seen)
        return seen

    def runs_nothing(self, module: str) -> bool:
        """A module whose body is its docstring: importing it runs no code worth a dependency."""
        body = ast.parse(self.modules[module].read_text()).body
        return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)



@cache
def this_package() -> Package:
    """This installation's `ganmodel` package."""
    return Package.scan(ROOT, PACKAGE)


def source_hash(modules: Iterable[str], pkg: Package | None = None) -> str:
    """sha256 over the relative paths and bytes of `modules` (dotted names)."""
    pkg = pkg or this_package()
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(pkg.rel(name).encode())
        h.update(pkg.modules[name].read_bytes())
    return h.hexdigest()


def code_hash(module: str) -> str:
    """`source_hash` of `module` and every package module it runs."""
    pkg = this_package()
    return source_hash(pkg.closure(modules=[module]), pkg)
