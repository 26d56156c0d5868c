"""The model card (a registered version's description): data, recipe, figures beside their floors
and the gate, the sample sheet; with and without class figures; under MLflow's length limit; and
written by the register stage."""

from __future__ import annotations

import json
from types import SimpleNamespace

from mlflow_helpers import REPO_ROOT, eval_metrics, run_register_stage, unique_name, write_stage_inputs

from ganmodel.config import RegisterParams
from ganmodel.registry.card import MAX_CARD_CHARS, SampleSheet, model_card
from ganmodel.registry.register import gate_text, recipe_of

pytest_plugins = ["fixtures_mlflow"]  # mlflow_store

FOLDER_META = {
    "dataset": "folder", "data_hash": "ab" * 32, "classes": ["cat", "T-shirt/top", "dog|wolf"],
    "image_shape": [3, 32, 32], "splits": {"train": 80, "val": 10, "test": 10},
    "class_counts": {"train": {"0": 30, "1": 30, "2": 20}, "val": {"0": 4, "1": 3, "2": 3},
                     "test": {"0": 3, "1": 4, "2": 3}},
    "labelled": True, "resolution": 32, "channels": 3, "resize": "center-crop",
    "source": {"raw_dir": "data/raw/pets.zip", "kind": "zip", "digest": "f" * 64},
}
RECIPE = {"preset": "conv_sn_cond", "arch": "dcgan", "conditional": "True", "epochs": "150", "loss": "hinge",
          "batch_size": "64", "lr_g": "0.0002", "lr_d": "0.0002", "betas": "(0.0, 0.9)", "z_dim": "128",
          "ema_decay": "0.999", "spectral_norm": "True", "num_workers": "2"}
SHEET = SampleSheet("0123abcd", "7", "samples/eval_samples.png")
GATE = {"fid_ratio": "≤ 5", "classes_covered": "≥ 3", "data_copying": "≥ -3"}


def _class_metrics(**kw) -> dict:
    figures = dict(fid=12.5, fid_floor=5.0, fid_ratio=2.5, kid_mean=0.0123, kid_std=0.0011,
                   kid_mean_floor=0.0002, precision=0.71, precision_floor=0.9, recall=0.55, recall_floor=0.91,
                   coverage=0.66, coverage_floor=0.89, classes_covered=3.0, classes_covered_floor=3.0,
                   data_copying=-0.4, data_copying_floor=0.1, n_classes=3)
    return eval_metrics(**{**figures, **kw})


def test_card_with_class_figures():
    card = model_card(name="gan-generator", version="3", data=FOLDER_META, recipe=RECIPE,
                      metrics=_class_metrics(), samples=SHEET, gate=GATE)
    assert card.startswith("### gan-generator v3\n")
    assert "images [n, C, H, W] in [-1, 1] out (32x32 px, RGB)" in card
    # The data: name, source, hash, shape, splits, classes with their counts (names escaped).
    assert "dataset **folder** from `data/raw/pets.zip` (zip), data hash `abababababab`" in card
    assert "- images 32x32 px, RGB, resized by center-crop" in card
    assert "- 80 train, 10 val, 10 test" in card and "- 3 classes" in card
    assert "| class | train | val | test |" in card
    assert "| cat | 30 | 4 | 3 |" in card and "| T-shirt/top | 30 | 3 | 4 |" in card
    assert "| dog\\|wolf | 20 | 3 | 3 |" in card  # a | in a name does not break the table
    # The recipe: preset, arch, conditional, epochs and the key hyper-parameters; not the scaling.
    assert "preset **conv\\_sn\\_cond**, arch `dcgan`, conditional, 150 epochs" in card
    assert "`lr_g` 0.0002" in card and "`betas` (0.0, 0.9)" in card and "`z_dim` 128" in card
    assert "num_workers" not in card
    # The figures beside their floors and the gate.
    assert "N = 2,000 generated images" in card and "eval seed 1234" in card
    assert "| FID | 12.5 | 5 |  |" in card
    assert "| FID / floor | 2.5 |  | ≤ 5 |" in card
    assert "| KID | 0.0123 ± 0.0011 | 0.0002 |  |" in card
    assert "| precision | 0.71 | 0.9 |  |" in card and "| recall | 0.55 | 0.91 |  |" in card
    assert "| coverage | 0.66 | 0.89 |  |" in card
    assert "| classes covered | 3 | 3 | ≥ 3 |" in card
    assert "| data copying | -0.4 | 0.1 | ≥ -3 |" in card
    # The sample sheet: a link into the MLflow UI and the artifact URI.
    link = "#/experiments/7/runs/0123abcd/artifactPath/samples/eval_samples.png"
    assert f"[samples/eval\\_samples.png]({link})" in card
    assert "`runs:/0123abcd/samples/eval_samples.png`" in card
    assert len(card) <= MAX_CARD_CHARS


def test_card_without_class_figures():
    """Unlabelled data: no class table, no class rows, what evaluate skipped and why."""
    metrics = _class_metrics(skipped={"class_coverage": "unlabelled data", "cas": "unlabelled data"})
    for k in ("classes_covered", "classes_covered_floor", "class_kl", "n_classes"):
        metrics.pop(k)
    data = {**FOLDER_META, "classes": ["images"], "labelled": False,
            "class_counts": {"train": {"0": 80}, "val": {"0": 10}, "test": {"0": 10}}}
    recipe = {**RECIPE, "preset": "conv_sn", "conditional": "False"}
    card = model_card(name="m", version="1", data=data, recipe=recipe, metrics=metrics,
                      gate={k: v for k, v in GATE.items() if k != "classes_covered"})
    assert "unlabelled (no classes)" in card and "| class |" not in card
    assert "classes covered" not in card and "class KL" not in card
    assert "preset **conv\\_sn**, arch `dcgan`, unconditional" in card
    assert "Skipped: class\\_coverage (unlabelled data); cas (unlabelled data)" in card
    assert "| FID | 12.5 | 5 |  |" in card and "#### Samples" not in card


def test_card_of_a_bare_evaluation():
    """No prepared meta, no recorded recipe, only the gate's metrics: still a card."""
    metrics = {k: v for k, v in eval_metrics().items()
               if k in ("fid", "fid_ratio", "data_copying", "data_hash", "n_samples")}
    card = model_card(name="m", version="2", data=None, recipe=None, metrics=metrics)
    assert "dataset **unknown**, data hash `dddddddddddd`" in card
    assert "- not recorded with the logged model" in card
    assert "| FID | 10 |  |  |" in card and "| data copying | 0.4 |  |  |" in card
    assert "px" not in card  # no shape known


def test_card_stays_under_mlflows_limit():
    n = 1000
    data = {**FOLDER_META, "classes": [f"class-{i:04d}-" + "x" * 60 for i in range(n)],
            "class_counts": {s: {str(i): 5 for i in range(n)} for s in ("train", "val", "test")}}
    card = model_card(name="m", version="1", data=data, recipe=RECIPE, metrics=_class_metrics(n_classes=n),
                      samples=SHEET, gate=GATE)
    assert len(card) <= MAX_CARD_CHARS == 5000
    assert f"- {n} classes" in card and "more |" in card and "#### Samples" in card
    huge = model_card(name="m" * 6000, version="1", data=None, recipe=None, metrics=_class_metrics())
    assert len(huge) <= MAX_CARD_CHARS


def test_gate_text_and_recipe():
    cfg = RegisterParams(max_fid_ratio=5.0, min_classes_covered=10, min_data_copying=-3.0)
    assert gate_text(eval_metrics(), cfg) == {"fid_ratio": "≤ 5", "data_copying": "≥ -3",
                                              "classes_covered": "≥ 10"}
    assert gate_text(eval_metrics(n_classes=4), cfg)["classes_covered"] == "≥ 4"
    unlabelled = {k: v for k, v in eval_metrics().items() if k != "classes_covered"}
    assert "classes_covered" not in gate_text(unlabelled, cfg)
    model = SimpleNamespace(params={"train.preset": "conv_sn", "train.epochs": "3", "other": "x"})
    assert recipe_of(model) == {"preset": "conv_sn", "epochs": "3"}
    assert recipe_of(SimpleNamespace(params=None)) == {}


def test_the_register_stage_describes_the_version_with_its_card(mlflow_store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # this checkout's ganmodel, whatever the venv installed
    name = unique_name()
    args = write_stage_inputs(tmp_path, name, mlflow_store.uri)
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    meta = {**FOLDER_META, "data_hash": json.loads((tmp_path / "metrics" / "evaluate.json").read_text())[
        "data_hash"]}
    (tmp_path / "data" / "prepared" / "meta.json").write_text(json.dumps(meta))
    args += ["--prepared", "data/prepared", "--samples-artifact", "samples/eval_samples.png"]
    proc = run_register_stage(tmp_path, args, mlflow_store.uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluate = json.loads((tmp_path / "runs" / "evaluate.json").read_text())
    card = MlflowClient(mlflow_store.uri).get_model_version(name, "1").description
    assert card.startswith(f"### {name} v1\n")
    assert "| cat | 30 | 4 | 3 |" in card and "| FID | 10 |" in card
    assert f"`runs:/{evaluate['run_id']}/samples/eval_samples.png`" in card

    (tmp_path / "data" / "prepared" / "meta.json").write_text(json.dumps({**meta, "data_hash": "0" * 64}))
    proc = run_register_stage(tmp_path, args, mlflow_store.uri)
    assert proc.returncode == 2 and "data hash 000000000000 differs" in proc.stderr
