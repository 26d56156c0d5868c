"""`python -m ganmodel.train_local`: the Ray-free entry point GPU benchmarks use. Flags are explicit
`train` keys under the params file's rule (one that disagrees with the preset is an error naming
both); a run writes a generator the pipeline can load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ganmodel.config import SEED_PRESET, load_params
from ganmodel.errors import GanModelError
from ganmodel.train_local import build_parser, train_params

REPO = Path(__file__).resolve().parents[1]
PARAMS = str(REPO / "params.yaml")


def _cfg(*flags: str):
    return train_params(build_parser().parse_args(["--params", PARAMS, *flags]))[1]


def test_no_flags_is_the_params_file_in_one_process():
    cfg, file_cfg = _cfg(), load_params(PARAMS).train
    assert cfg.model_dump() == {**file_cfg.model_dump(), "num_workers": 1, "use_gpu": False}


def test_preset_alone_and_with_flags_outside_it():
    cfg = _cfg("--preset", "seed", "--epochs", "3")
    assert cfg.preset == "seed" and cfg.epochs == 3
    assert {k: getattr(cfg, k) for k in SEED_PRESET} == SEED_PRESET


def test_a_flag_that_disagrees_with_the_preset_is_refused_naming_both():
    with pytest.raises(GanModelError, match=r"train\.lr_g: 0\.001 conflicts with train\.preset=seed") as exc:
        _cfg("--preset", "seed", "--lr-g", "1e-3")
    assert len(str(exc.value).splitlines()) == 1
    assert _cfg("--preset", "seed", "--lr-g", "2e-4").lr_g == 2e-4  # agreeing is fine
    cfg = _cfg("--preset", "custom", "--lr-g", "1e-3", "--batch-size", "64")  # no preset: the flags
    assert (cfg.lr_g, cfg.batch_size, cfg.preset) == (1e-3, 64, "custom")


def test_bad_flag_is_a_one_line_error_naming_the_key():
    with pytest.raises(GanModelError, match=r"command line: train\.lr_g"):
        _cfg("--lr-g", "-1")


def test_tiny_run_writes_a_loadable_generator(tmp_path):
    out = tmp_path / "g.pt"
    cmd = [sys.executable, "-m", "ganmodel.train_local", "--params", PARAMS, "--preset", "seed",
           "--epochs", "2", "--steps-per-epoch", "2", "--threads", "1", "--generator", str(out), "--json"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and [h["epoch"] for h in summary["history"]] == [1, 2]
    from ganmodel.artifacts import load_generator

    assert load_generator(out)[0].z_dim == SEED_PRESET["z_dim"]
    bad = subprocess.run([sys.executable, "-m", "ganmodel.train_local", "--params", PARAMS,
                          "--generator", str(tmp_path / "nope" / "g.pt")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: --generator {tmp_path / 'nope' / 'g.pt'}: directory {tmp_path / 'nope'} does not exist"]
