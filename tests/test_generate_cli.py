"""`ganmodel generate`: from a local generator file and from the registry, deterministic per seed,
with one-line errors (exit 2) for unknown models/aliases/versions and bad arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow_helpers import (
    BIN,
    REPO_ROOT,
    make_generator,
    register_like_pipeline,
    subprocess_env,
    unique_name,
)

from ganmodel.registry import cli

pytest_plugins = ["fixtures_mlflow"]  # mlflow_store


@pytest.fixture(scope="module")
def registered(mlflow_store, tmp_path_factory):
    """A generator file registered as `<name>` v1 with alias champion; returns (name, file, train
    run id, logged model id)."""
    gen = make_generator(tmp_path_factory.mktemp("gen") / "generator.pt", seed=42)
    name = unique_name()
    out, run_ids = register_like_pipeline(mlflow_store.uri, mlflow_store.experiment_id, name, gen)
    assert out["decision"] == "champion"
    return name, gen, run_ids["train"], out["model_id"]


def _run(args: list[str], cwd: Path, module: bool = False, **env: str) -> subprocess.CompletedProcess:
    exe = [sys.executable, "-m", "ganmodel"] if module else [str(BIN / "ganmodel")]
    return subprocess.run([*exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=subprocess_env(**env))


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _in_process(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    return exc.value.code, capsys.readouterr().err


def test_help_is_fast_and_lazy():
    code = ("import sys, ganmodel.registry.cli; "
            "print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
    proc = _run(["generate", "--help"], REPO_ROOT)
    assert proc.returncode == 0 and "--model" in proc.stdout


def test_file_and_registry_give_the_same_images_per_seed(registered, mlflow_store, tmp_path, capsys):
    name, gen, run_id, model_id = registered
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    p = _run(["generate", "--model", str(gen), "-n", "5", "--seed", "0", "--out", str(a)], tmp_path)
    assert p.returncode == 0, p.stderr
    p = _run(["generate", "--model", f"models:/{name}@champion", "-n", "5", "--seed", "0", "--out", str(b)],
             tmp_path, module=True, MLFLOW_TRACKING_URI=mlflow_store.uri)
    assert p.returncode == 0, p.stderr
    x, y = np.load(a), np.load(b)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    assert np.array_equal(x, y)  # same weights, same seed
    assert x.min() >= -1.0 and x.max() <= 1.0

    # In-process from here (the module is already imported): same seed again, another seed,
    # a runs:/ URI of the train run's weights file, the logged model's id.
    c, d, e, f = (tmp_path / f"{x}.npy" for x in "cdef")
    assert _in_process(["generate", "--model", str(gen), "-n", "5", "--seed", "0", "--out", str(c)],
                       capsys)[0] == 0
    assert np.array_equal(np.load(c), x)
    assert _in_process(["generate", "--model", str(gen), "-n", "5", "--seed", "1", "--out", str(d)],
                       capsys)[0] == 0
    assert not np.allclose(np.load(d), x)
    assert _in_process(["generate", "--model", f"runs:/{run_id}/generator/generator.pt", "-n", "5",
                        "--seed", "0", "--out", str(e)], capsys)[0] == 0
    assert np.array_equal(np.load(e), x)
    assert _in_process(["generate", "--model", f"models:/{model_id}", "-n", "5", "--seed", "0", "--out",
                        str(f)], capsys)[0] == 0
    assert np.array_equal(np.load(f), x)


def test_png_grid_from_a_version(registered, mlflow_store, tmp_path, capsys):
    from PIL import Image

    name, *_ = registered
    out = tmp_path / "grid.png"
    code, err = _in_process(["generate", "--model", f"models:/{name}/1", "-n", "64", "--seed", "3",
                             "--out", str(out)], capsys)
    assert code == 0, err
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "L"
    assert img.size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 tiles of 28 px, padding 2


def test_unknown_alias_is_one_line_exit_2(registered, mlflow_store, tmp_path):
    name, *_ = registered
    p = _run(["generate", "--model", f"models:/{name}@nope", "--out", str(tmp_path / "x.npy")], tmp_path,
             MLFLOW_TRACKING_URI=mlflow_store.uri)
    _one_line_error(p, "no alias 'nope'", "champion")
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize(("model", "words"), [
    ("models:/no-such-model@champion", ("no registered model named 'no-such-model'",)),
    ("models:/{name}/7", ("has no version 7",)),
    ("models:/{name}/latest-ish", ("version must be a number",)),
    ("models:/{name}", ("name a version or an alias",)),
    ("runs:/0123456789abcdef0123456789abcdef/model", ("runs:/",)),
    ("missing/generator.pt", ("no such generator file",)),
])
def test_unknown_model_version_or_file(registered, mlflow_store, tmp_path, capsys, model, words):
    name, *_ = registered
    out = str(tmp_path / "x.npy")
    code, err = _in_process(["generate", "--model", model.format(name=name), "--out", out], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err


@pytest.mark.parametrize(("args", "words"), [
    (["-n", "0"], "expected 1 to 10000"),
    (["-n", "many"], "expected an integer"),
    (["--seed", "-1"], "seed"),
    (["--out", "grid.jpg"], "unknown output extension '.jpg'"),
    (["--out", "no-such-dir/grid.png"], "does not exist"),
    (["--out", "adir.npy"], "is a directory"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, words):
    base = {"--model": "models/generator.pt", "--out": "x.npy"}
    argv = ["generate"]
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    (tmp_path / "adir.npy").mkdir()
    p = _run([*argv, *args], tmp_path)
    _one_line_error(p, words)


def test_local_store_missing_is_an_error_not_a_new_database(tmp_path):
    p = _run(["generate", "--model", "models:/gan-generator@champion", "--out", "x.npy"], tmp_path,
             MLFLOW_TRACKING_URI="")
    _one_line_error(p, "no MLflow store at")
    assert not (tmp_path / "mlruns").exists()  # not even its directory


def test_server_down_fails_fast_with_one_line(tmp_path, monkeypatch, mlflow_store):
    from mlflow_helpers import free_port, run_register_stage, write_stage_inputs

    from ganmodel.errors import GanModelError
    from ganmodel.tracking.store import configure_tracking

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    p = _run(["generate", "--model", "models:/gan-generator@champion", "--out", "x.npy"], tmp_path,
             MLFLOW_TRACKING_URI=url)
    _one_line_error(p, "unreachable", url)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    with pytest.raises(GanModelError, match="unreachable"):
        configure_tracking(tmp_path)

    args = write_stage_inputs(tmp_path, "gan-generator", mlflow_store.uri)  # fabricated on a live store
    stage = run_register_stage(tmp_path, args, url)
    _one_line_error(stage, "unreachable")
    assert not (tmp_path / "runs" / "register.json").exists()


def test_generator_file_whose_weights_do_not_match_its_arch(tmp_path):
    import torch

    from ganmodel.networks import build_generator

    path = tmp_path / "mismatch.pt"
    weights = build_generator("mlp", 100).state_dict()
    torch.save({"state_dict": weights, "meta": {"arch": "dcgan", "z_dim": 100}}, path)
    p = _run(["generate", "--model", str(path), "--out", "x.npy"], tmp_path)
    _one_line_error(p, "mismatch.pt: weights do not match arch 'dcgan'")
    assert not (tmp_path / "x.npy").exists()


# --- conditional generators: the classes asked for ------------------------------------------------


def test_labels_on_an_unconditional_generator_are_refused(tmp_path):
    gen = make_generator(tmp_path / "g.pt")
    p = _run(["generate", "--model", str(gen), "--label", "7", "--out", str(tmp_path / "x.npy")], tmp_path)
    _one_line_error(p, "--label: this generator is unconditional")
    assert not (tmp_path / "x.npy").exists()


# slow: its fixtures train a conditional GAN for 900 steps and a classifier (~97 s); the full suite
# shares them with the learning tests, so only the quick lane saves the time.
@pytest.mark.slow
def test_a_conditional_generator_makes_the_asked_classes(conditional_generator_file, digit_classifier,
                                                          tmp_path, capsys):
    import torch
    from PIL import Image

    from ganmodel.evaluation.features import extract

    out = tmp_path / "s.npy"
    code, _ = _in_process(["generate", "--model", str(conditional_generator_file), "-n", "40", "--labels",
                           "3,7", "--out", str(out)], capsys)
    assert code == 0
    images = torch.from_numpy(np.load(out))
    _, logits = extract(digit_classifier, images, 40)
    asked = torch.tensor([3] * 20 + [7] * 20)  # equal runs, in the order given
    assert (logits.argmax(1) == asked).double().mean() >= 0.8

    grid = tmp_path / "g.png"
    assert _in_process(["generate", "--model", str(conditional_generator_file), "-n", "30", "--out",
                        str(grid)], capsys)[0] == 0
    w, h = Image.open(grid).size
    assert (w, h) == (2 + 3 * 30, 2 + 10 * 30)  # every class, one row each: 10 rows of 3
    code, err = _in_process(["generate", "--model", str(conditional_generator_file), "--label", "10",
                             "--out", str(tmp_path / "y.npy")], capsys)
    assert code == 2 and "--label: 10 is not a class of this generator (0-9)" in err
    code, err = _in_process(["generate", "--model", str(conditional_generator_file), "--labels", "1,,2",
                             "--out", str(tmp_path / "y.npy")], capsys)
    assert code == 2 and "--labels" in err and len(err.strip().splitlines()) == 1
