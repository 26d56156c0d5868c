"""dvc.yaml's code deps are derived from the code: each stage declares every module of `ganmodel`
its script runs (imports at any depth, function-level ones too, and files loaded by path such as
the models-from-code `model_code.py`), and nothing it does not run. A missing dep means a code
change re-runs nothing (and the train stage's Ray run identity resumes a checkpoint trained with
the old code); a stale one re-runs a stage, and restarts training, for code it never runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from import_closure import Package, covered, dep_paths, stage_scripts, stale, undeclared

ROOT = Path(__file__).resolve().parents[1]
STAGES: dict[str, dict] = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def package() -> Package:
    return Package.scan(ROOT, "ganmodel")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_every_module_it_runs(package: Package, stage: str):
    spec = STAGES[stage]
    scripts = stage_scripts(spec["cmd"], ROOT)
    assert scripts, f"{stage}: no script found in its cmd"
    deps = dep_paths(spec)
    missing = [s.relative_to(ROOT).as_posix() for s in scripts]
    missing = [s for s in missing if not covered(s, deps)]
    missing += undeclared(package, package.closure(scripts), deps)
    assert not missing, f"dvc.yaml stage {stage} runs these files but does not list them in deps: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_no_module_it_does_not_run(package: Package, stage: str):
    spec = STAGES[stage]
    deps = dep_paths(spec)
    extra = stale(package, package.closure(stage_scripts(spec["cmd"], ROOT)), deps)
    scripts = {s.relative_to(ROOT).as_posix() for s in stage_scripts(spec["cmd"], ROOT)}
    extra += [d for d in deps if d.startswith("pipelines/") and d not in scripts]
    assert not extra, (f"dvc.yaml stage {stage} lists code deps it never runs (or a folder it runs "
                       f"only part of; list the files): {extra}")


def _plant(root: Path, files: dict[str, str]) -> Package:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return Package.scan(root, "pkg")


def test_the_closure_follows_every_way_a_module_is_run(tmp_path: Path):
    """Function-level and relative imports, parents' __init__, importlib strings, path strings."""
    pkg = _plant(tmp_path, {
        "run.py": "def main():\n    from pkg.a.b import f\n",
        "pkg/__init__.py": '"""Docstring only."""\n',
        "pkg/a/__init__.py": "X = 1\n",
        "pkg/a/b.py": "def f():\n    from . import c\n    from ..d import g\n",
        "pkg/a/c.py": "import importlib\nM = importlib.import_module('pkg.e')\n",
        "pkg/d.py": "from pathlib import Path\nCODE = Path(__file__).with_name('loaded.py')\ng = 1\n",
        "pkg/e.py": "SHIPPED = ('f.py', 'nets')\n",
        "pkg/loaded.py": "import pkg.a\n",
        "pkg/f.py": "",
        "pkg/nets/__init__.py": "",
        "pkg/nets/deep.py": "",
        "pkg/unused.py": "import pkg.d\n",
    })
    closure = pkg.closure([tmp_path / "run.py"])
    assert closure == {"pkg", "pkg.a", "pkg.a.b", "pkg.a.c", "pkg.d", "pkg.e", "pkg.loaded", "pkg.f",
                       "pkg.nets", "pkg.nets.deep"}
    assert pkg.runs_nothing("pkg") and not pkg.runs_nothing("pkg.a")


def test_an_undeclared_function_level_import_is_reported(tmp_path: Path):
    pkg = _plant(tmp_path, {
        "run.py": "import pkg.declared\n",
        "pkg/__init__.py": '"""Docstring only: needs no dep."""\n',
        "pkg/declared.py": "def later():\n    from pkg.sub.hidden import x\n",
        "pkg/sub/__init__.py": "Y = 0\n",
        "pkg/sub/hidden.py": "x = 1\n",
        "pkg/sub/unused.py": "z = 2\n",
    })
    closure = pkg.closure([tmp_path / "run.py"])
    assert undeclared(pkg, closure, ["pkg/declared.py"]) == ["pkg/sub/__init__.py", "pkg/sub/hidden.py"]
    assert undeclared(pkg, closure, ["pkg/declared.py", "pkg/sub"]) == []
    # A folder the stage runs only part of is as stale as a file it never runs.
    assert stale(pkg, closure, ["pkg/declared.py", "pkg/sub", "data/x"]) == ["pkg/sub"]
    assert stale(pkg, closure, ["pkg/declared.py", "pkg/sub/__init__.py", "pkg/sub/hidden.py"]) == []
