"""The package's shape, checked from its source: no import cycles (function-level imports count),
MLflow only behind `ganmodel/tracking/` (and the pyfunc that MLflow itself loads), no file I/O in
`networks/`, serving's imports limited to what ships in the model, and ruff clean."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from import_closure import imported_names

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ganmodel"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for t in imported_names(path, name):
            r = resolve(t) if t == "ganmodel" or t.startswith("ganmodel.") else None
            # A submodule importing its own package (`from ganmodel.x import sub`) is no cycle.
            if r and r != name and not name.startswith(r + "."):
                edges.add(r)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_ganmodel():
    cycles = find_cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


# MLflow is imported by the tracking package, by the pyfunc that MLflow loads (serving, model_code),
# and nowhere else: pipelines and the rest of ganmodel go through ganmodel.tracking.
MLFLOW_ALLOWED = ("ganmodel/tracking/", "ganmodel/registry/serving.py", "ganmodel/registry/model_code.py")


@pytest.mark.parametrize("folder", ["ganmodel", "pipelines"])
def test_mlflow_only_behind_tracking(folder: str):
    offenders = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(MLFLOW_ALLOWED):
            continue
        name = _module_name(path) if folder == "ganmodel" else path.stem
        if any(m == "mlflow" or m.startswith("mlflow.") for m in imported_names(path, name)):
            offenders.append(rel)
    assert not offenders, f"import mlflow outside ganmodel/tracking/: {offenders}"


def test_networks_do_no_file_io():
    for path in (PACKAGE / "networks").rglob("*.py"):
        tree = ast.parse(path.read_text())
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not calls & {"torch.save", "torch.load", "open", "Path"}, (path.name, calls)


def test_serving_imports_only_what_ships_in_the_model():
    from ganmodel.registry.serving import SERVING_MODULES

    shipped = {_module_name(PACKAGE / m) if m.endswith(".py") else f"ganmodel.{m}" for m in SERVING_MODULES}
    graph = _graph()
    seen, todo = set(), ["ganmodel.registry.serving"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(graph[m])
    outside = {m for m in seen if m not in shipped and not m.startswith("ganmodel.networks.")}
    assert not outside, f"serving reaches modules that are not shipped with the model: {sorted(outside)}"


def test_ruff_is_clean():
    # The style pyproject.toml configures is enforced by the suite, not only by `make lint`:
    # a line that breaks it fails `make test` (and CI) at once.
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: `pip install -e '.[dev]'` (make test does)")
    out = subprocess.run([ruff, "check", "ganmodel", "pipelines", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]
