"""`python -m ganmodel.train_local`: the Ray-free entry point GPU benchmarks use. Flags override
the params file and win over a preset; a run writes a generator the pipeline can load."""

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


def test_flags_win_over_the_preset():
    cfg = _cfg("--preset", "seed", "--lr", "1e-3", "--batch-size", "64")
    assert (cfg.lr, cfg.batch_size) == (1e-3, 64)
    assert cfg.arch == SEED_PRESET["arch"] and cfg.loss == SEED_PRESET["loss"]  # the rest of the seed
    assert cfg.preset == "custom"  # no longer the article's recipe


def test_bad_flag_is_a_one_line_error_naming_the_key():
    with pytest.raises(GanModelError, match=r"command line: train\.lr"):
        _cfg("--lr", "-1")


def test_tiny_run_writes_a_loadable_generator(tmp_path):
    out = tmp_path / "g.pt"
    cmd = [sys.executable, "-m", "ganmodel.train_local", "--params", PARAMS, "--preset", "seed",
           "--epochs", "2", "--steps-per-epoch", "2", "--threads", "1", "--generator", str(out), "--json"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and [h["epoch"] for h in summary["history"]] == [1, 2]
    from ganmodel.training.checkpoint import load_generator

    assert load_generator(out).z_dim == SEED_PRESET["z_dim"]
    bad = subprocess.run([sys.executable, "-m", "ganmodel.train_local", "--params", PARAMS,
                          "--generator", str(tmp_path / "nope" / "g.pt")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: --generator {tmp_path / 'nope' / 'g.pt'}: directory {tmp_path / 'nope'} does not exist"]
