"""Typed params: the repo's params.yaml loads; bad keys, types, ranges and combinations stop
with a one-line `GanModelError` naming the key, both in-process and through a stage's CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ganmodel.config import DataParams, Params, TrainParams, load_params, parse_params
from ganmodel.errors import GanModelError


def _error(raw: object) -> str:
    with pytest.raises(GanModelError) as exc:
        parse_params(raw)  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "\n" not in msg, f"error message spans several lines: {msg!r}"
    return msg


def test_repo_params_load(repo_root: Path) -> None:
    params = load_params(repo_root / "params.yaml")
    assert isinstance(params, Params)
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    # Every value written in params.yaml is what the typed model holds.
    for section, values in raw.items():
        model = getattr(params, section)
        for key, value in values.items():
            got = getattr(model, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, f"{section}.{key}"
    # The seed preset on top of the repo's params (`dvc exp run -S train.preset=seed`) is the
    # article's recipe: MLP G/D, BCE, Adam lr 2e-4 with default betas, batch 128, z 100, no EMA/SN.
    raw["train"]["preset"] = "seed"
    t = parse_params(raw).train
    assert (t.arch, t.loss, t.lr_g, t.betas, t.batch_size, t.z_dim, t.ema_decay, t.spectral_norm) == (
        "mlp", "bce", 2e-4, (0.9, 0.999), 128, 100, 0.0, False)


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("lr_g", "1e-3", "'1e-3'"),       # as `dvc exp run -S train.lr_g=1e-3` writes it (a YAML string)
    ("lr_d", 0.001, "0.001"),
    ("betas", [0.5, 0.999], "[0.5, 0.999]"),
    ("arch", "dcgan", "'dcgan'"),
])
def test_a_key_that_disagrees_with_the_preset_is_refused_naming_both(repo_root: Path, key, value, shown):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["train"].update(preset="seed", **{key: value})
    with pytest.raises(GanModelError) as exc:
        parse_params(raw)
    msg = str(exc.value)
    assert msg.startswith(f"params.yaml: train.{key}: {shown} conflicts with train.preset=seed"), msg
    assert "\n" not in msg


def test_keys_that_agree_with_the_preset_or_no_preset(repo_root: Path):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["train"].update(preset="seed", lr_g="2e-4", betas=[0.9, 0.999], arch="mlp")
    assert parse_params(raw).train.lr_g == 2e-4
    raw["train"].update(preset="custom", lr_g="1e-3", arch="dcgan")
    t = parse_params(raw).train
    assert (t.lr_g, t.lr_d, t.arch, t.betas) == (1e-3, 2e-4, "dcgan", (0.9, 0.999))
    raw["train"]["preset"] = "nope"
    with pytest.raises(GanModelError, match="train.preset: unknown preset 'nope'"):
        parse_params(raw)


def test_empty_mapping_gives_defaults() -> None:
    params = parse_params({})
    assert params.train == TrainParams()
    assert params.data == DataParams()
    assert params.data.dataset == "mnist5k"


def test_the_code_defaults_are_the_shipped_params(repo_root: Path) -> None:
    """One place for defaults: every key params.yaml ships has the value the code defaults to, so
    a key left out of params.yaml (or a section built in code) means what params.yaml says."""
    shipped = parse_params(yaml.safe_load((repo_root / "params.yaml").read_text())).model_dump(mode="json")
    assert Params().model_dump(mode="json") == shipped


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(GanModelError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n  epochs: 3\n")
    with pytest.raises(GanModelError) as exc:
        load_params(bad)
    assert str(bad) in str(exc.value) and "YAML" in str(exc.value)
    assert "\n" not in str(exc.value)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(GanModelError, match="mapping"):
        load_params(bad)


def test_unknown_top_level_section() -> None:
    msg = _error({"trian": {"epochs": 3}})
    assert "trian" in msg and "unknown key" in msg
    assert "train" in msg  # the allowed sections are listed


@pytest.mark.parametrize("section,key", [("train", "foo"), ("data", "datset"), ("tracking", "uri")])
def test_unknown_key_in_section(section: str, key: str) -> None:
    msg = _error({section: {key: 1}})
    assert f"{section}.{key}" in msg and "unknown key" in msg


def test_error_names_the_source_file(tmp_path: Path) -> None:
    p = tmp_path / "my-params.yaml"
    p.write_text("train:\n  foo: 1\n")
    with pytest.raises(GanModelError) as exc:
        load_params(p)
    assert str(p) in str(exc.value) and "train.foo" in str(exc.value)


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"train": {"epochs": 2.5}}, "train.epochs"),
        ({"train": {"epochs": True}}, "train.epochs"),
        ({"train": {"lr_g": "fast"}}, "train.lr_g"),
        ({"train": {"lr_d": True}}, "train.lr_d"),
        ({"train": {"use_gpu": "maybe"}}, "train.use_gpu"),
        ({"train": {"betas": [0.5]}}, "train.betas"),
        ({"train": {"storage_path": 5}}, "train.storage_path"),
        ({"data": {"dataset": "cifar10"}}, "data.dataset"),
        ({"train": {"precision": "fp16"}}, "train.precision"),
        ({"train": "fast"}, "train"),
    ],
)
def test_wrong_type(raw: dict, key: str) -> None:
    msg = _error(raw)
    assert re.search(rf": {re.escape(key)}[.:]", msg), msg


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"lr_g": 0.0}}, "train.lr_g"),
        ({"train": {"ema_decay": 1.0}}, "train.ema_decay"),
        ({"train": {"betas": [0.5, 1.0]}}, "train.betas"),
        ({"train": {"num_workers": 0}}, "train.num_workers"),
        ({"data": {"val_fraction": 0.7}}, "data.val_fraction"),
        ({"data": {"val_fraction": 0.0}}, "data.val_fraction"),
        ({"data": {"test_fraction": -0.1}}, "data.test_fraction"),
        ({"data": {"seed": -1}}, "data.seed"),
    ],
)
def test_out_of_range(raw: dict, key: str) -> None:
    msg = _error(raw)
    assert f": {key}:" in msg, msg


def test_batch_not_divisible_by_workers() -> None:
    msg = _error({"train": {"preset": "custom", "batch_size": 100, "num_workers": 3}})
    assert ": train.batch_size:" in msg and "train.num_workers" in msg, msg
    # The same numbers are fine when they divide.
    ok = parse_params({"train": {"preset": "custom", "batch_size": 99, "num_workers": 3}})
    assert ok.train.batch_size == 99


def test_mbstd_needs_a_conv_family() -> None:
    msg = _error({"train": {"preset": "custom", "arch": "mlp", "mbstd_group": 4}})
    assert ": train.mbstd_group:" in msg and "mlp" in msg, msg
    ok = parse_params({"train": {"preset": "custom", "arch": "conv", "mbstd_group": 4}})
    assert ok.train.mbstd_group == 4


def test_download_with_mnist5k() -> None:
    msg = _error({"data": {"dataset": "mnist5k", "download": True}})
    assert ": data.download:" in msg and "mnist5k" in msg, msg
    assert parse_params({"data": {"dataset": "mnist", "download": True}}).data.download is True


FOLDER = {"dataset": "folder", "raw_dir": "/some/images", "resolution": 32}


@pytest.mark.parametrize(("data", "key", "words"), [
    ({"dataset": "folder"}, "data.resolution", "required for data.dataset folder"),
    ({**FOLDER, "resolution": 8}, "data.resolution", "greater than or equal to 16"),
    ({**FOLDER, "resolution": 512}, "data.resolution", "less than or equal to 256"),
    ({**FOLDER, "channels": 2}, "data.channels", "1 or 3"),
    ({**FOLDER, "channels": True}, "data.channels", "boolean"),
    ({**FOLDER, "resize": "crop"}, "data.resize", "'center-crop', 'pad' or 'stretch'"),
    ({**FOLDER, "background": 256}, "data.background", "grey level 0-255 or [r, g, b]"),
    ({**FOLDER, "background": [0, 0]}, "data.background", "grey level 0-255 or [r, g, b]"),
    ({**FOLDER, "background": "white"}, "data.background", "grey level 0-255 or [r, g, b]"),
    ({**FOLDER, "channels": 1, "background": [255, 0, 0]}, "data.background",
     "is a colour, but data.channels is 1"),
    ({**FOLDER, "max_image_pixels": 0}, "data.max_image_pixels", "greater than 0"),
    ({**FOLDER, "on_bad_file": "warn"}, "data.on_bad_file", "'error' or 'skip'"),
    ({**FOLDER, "min_class_images": 0}, "data.min_class_images", "greater than or equal to 1"),
    ({**FOLDER, "download": True}, "data.download", "read from data.raw_dir"),
    # Built-in datasets are 28x28 greyscale; prepare does not resample them.
    ({"dataset": "mnist5k", "resolution": 64}, "data.resolution", "needs data.dataset folder"),
    ({"dataset": "fashion_mnist", "channels": 3}, "data.channels", "needs data.dataset folder"),
    ({"dataset": "mnist5k", "background": [0, 0, 255]}, "data.background", "is a colour"),
])
def test_folder_keys(data: dict, key: str, words: str) -> None:
    msg = _error({"data": data})
    assert f": {key}: " in msg and words in msg, msg


def test_folder_defaults_and_built_in_shape() -> None:
    d = parse_params({"data": FOLDER}).data
    assert (d.image_resolution, d.image_channels, d.resize, d.background_rgb) == (32, 3, "center-crop",
                                                                                  (255, 255, 255))
    assert (d.on_bad_file, d.min_class_images, d.max_image_pixels) == ("error", None, 89_478_485)
    grey = parse_params({"data": {**FOLDER, "channels": 1, "background": [9, 9, 9]}}).data
    assert grey.image_channels == 1 and grey.background_rgb == (9, 9, 9)
    # Folder-only keys that say how files are decoded are ignored by the built-ins; their shape may be
    # given as it is.
    builtin = parse_params({"data": {"dataset": "mnist", "resolution": 28, "channels": 1,
                                     "resize": "pad"}}).data
    assert (builtin.image_resolution, builtin.image_channels) == (28, 1)


@pytest.mark.parametrize("key,value", [("arch", "resnet"), ("loss", "l2")])
def test_unknown_arch_or_loss(key: str, value: str) -> None:
    msg = _error({"train": {key: value}})
    assert f": train.{key}:" in msg and value in msg, msg


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan_gp"])
def test_known_arch_and_loss(arch: str, loss: str) -> None:
    t = parse_params({"train": {"preset": "custom", "arch": arch, "loss": loss}}).train
    assert (t.arch, t.loss) == (arch, loss)


def test_params_are_frozen() -> None:
    params = parse_params({})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        params.train.epochs = 5  # type: ignore[misc]


# --- the CLI path -------------------------------------------------------------------------------


def _run_prepare(repo_root: Path, tmp_path: Path,
                 params_text: str) -> tuple[subprocess.CompletedProcess, dict]:
    params = tmp_path / "bad.yaml"
    params.write_text(params_text)
    outs = {"out_dir": tmp_path / "prepared", "metrics": tmp_path / "metrics" / "prepare.json",
            "run_file": tmp_path / "runs" / "prepare.json"}
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///" + str(tmp_path / "mlflow.db"),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [sys.executable, str(repo_root / "pipelines" / "prepare.py"), "--params", str(params),
         "--out-dir", str(outs["out_dir"]), "--metrics", str(outs["metrics"]),
         "--run-file", str(outs["run_file"])],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    return proc, outs


@pytest.mark.parametrize(
    "text,key",
    [
        ("data:\n  dataset: mnist5k\ntrain:\n  foo: 1\n", "train.foo"),
        ("data:\n  val_fraction: 0.7\n", "data.val_fraction"),
        ("data:\n  dataset: mnist5k\n  download: true\n", "data.download"),
    ],
)
def test_prepare_cli_rejects_bad_params(repo_root: Path, tmp_path: Path, text: str, key: str) -> None:
    proc, outs = _run_prepare(repo_root, tmp_path, text)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and key in lines[0], lines[0]
    for path in outs.values():
        assert not path.exists(), f"{path} was created by a stage that failed"
    assert not (tmp_path / "mlflow.db").exists()  # stopped before touching the tracking store
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.integration  # creates a real MLflow sqlite store (its migrations take a while)
def test_prepare_cli_missing_raw_data_leaves_no_outputs(repo_root: Path, tmp_path: Path) -> None:
    """Valid params, but the raw files are missing: the stage fails mid-way, cleanly."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    proc, outs = _run_prepare(repo_root, tmp_path, f"data:\n  dataset: mnist\n  raw_dir: {raw_dir}\n")
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "data.raw_dir" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    for path in outs.values():
        assert not path.exists(), f"{path} was created by a stage that failed"
    # The run was recorded and marked FAILED.
    from mlflow.tracking import MlflowClient

    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    exp = client.get_experiment_by_name("ganmodel")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags["pipeline.stage"] == "prepare"
