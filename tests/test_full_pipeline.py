"""The whole DAG, end to end (integration): `dvc repro` runs train -> evaluate -> register in a copy
of the repo whose prepare and classifier stages are already reproduced (real DVC, Ray Train with 2
CPU workers, MLflow on sqlite), with tiny params.

Checks what users read afterwards: `dvc metrics show` finds the evaluate figures with their floor
and N; `dvc plots show` renders the declared plots offline into a directory; the evaluate run in
MLflow has the same figures, its images, and lineage tags equal to the DVC run links; the register
decision follows the gate on those figures; nothing is left to reproduce.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from stage_repo import clone_stage_repo, edit_params, sh, short_tmp

pytest_plugins = ["fixtures_mlflow", "fixtures_stage"]  # mlflow_template_db, upstream_repo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

N = 200  # evaluate.n_samples: <= the 1,000 held-out mnist5k images
GATE = dict(max_fid_ratio=1e6, min_classes_covered=0, min_data_copying=-1e6)
EPOCHS = 2
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def full(upstream_repo: Path, mlflow_template_db: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("full")
    ray_tmp = short_tmp("rf")
    try:
        # Conditional, as the default recipe: labels travel through Ray, evaluate adds
        # cond_accuracy and CAS, the pyfunc records its classes.
        repo, env = clone_stage_repo(upstream_repo, tmp, mlflow_template_db, ray_tmp, epochs=EPOCHS,
                                     eval_every=1, eval_samples=100, storage_path=str(tmp / "ckpt"),
                                     conditional=True)
        edit_params(repo, "evaluate", n_samples=N, batch_size=100, kid_subsets=10, kid_subset_size=100,
                    grid_size=20, nn_rows=4, cas_epochs=2)
        # Two epochs cannot pass the shipped gate: thresholds a 2-epoch generator passes, so the
        # decision is known in advance (the gate's failing paths: test_registry, test_calibration).
        edit_params(repo, "register", **GATE)
        repro = sh(["dvc", "repro"], repo, env, timeout=600)
        status = sh(["dvc", "status"], repo, env)
        metrics = sh(["dvc", "metrics", "show", "--json"], repo, env)
        plots = sh(["dvc", "plots", "show", "-o", str(tmp / "plots-html")], repo, env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    yield SimpleNamespace(repo=repo, env=env, tmp=tmp, uri=env["MLFLOW_TRACKING_URI"], repro=repro,
                          status=status, metrics=metrics, plots=plots)


def _stage_runs(uri: str) -> dict[str, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ganmodel")
    assert exp is not None
    out = {}
    for stage in ("train", "evaluate", "register"):
        found = client.search_runs([exp.experiment_id], filter_string=f"tags.`pipeline.stage` = '{stage}'")
        assert len(found) == 1, f"{len(found)} runs tagged pipeline.stage={stage}"
        out[stage] = found[0]
    return out


def _read(repo: Path, rel: str) -> dict:
    return json.loads((repo / rel).read_text())


def test_downstream_stages_ran_and_nothing_is_left(full) -> None:
    log = full.repro.stdout + full.repro.stderr
    for stage in ("train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in log, log[-4000:]
    assert "Running stage 'prepare'" not in log  # already reproduced upstream: DVC skipped it
    # Workers' per-report INFO lines from Ray Train are quiet; rank 0's progress line remains.
    assert "Reporting training result" not in log and "Checkpoint successfully created" not in log
    assert f"epoch {EPOCHS}/{EPOCHS}" in log
    assert "up to date" in full.status.stdout, full.status.stdout
    lock = yaml.safe_load((full.repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"prepare", "classifier", "train", "evaluate", "register"}


def test_dvc_metrics_show_reads_the_evaluate_figures(full) -> None:
    shown = json.loads(full.metrics.stdout)
    data = next(iter(shown.values()))["data"]
    m = data["metrics/evaluate.json"]["data"]
    seed = yaml.safe_load((full.repo / "params.yaml").read_text())["evaluate"]["seed"]
    assert m["n_samples"] == N and m["eval_seed"] == seed
    for key in ("fid", "fid_floor", "kid_mean", "kid_std", "is_mean", "precision", "recall", "density",
                "coverage", "classes_covered", "class_kl", "precision_floor", "classes_covered_floor",
                "cond_accuracy", "cond_accuracy_floor", "cas", "cas_floor"):
        assert math.isfinite(m[key]), key
    # The floors of the conditional figures: the classifier on real held-out images, and a
    # classifier trained on N real images (2 epochs here) tested on them.
    assert m["cond_accuracy_floor"] > 0.5 and 0.1 <= m["cas_floor"] <= 1
    assert m["fid_floor"] > 0
    assert m["fid_ratio"] == pytest.approx(m["fid"] / m["fid_floor"], rel=1e-4)
    assert 0 <= m["classes_covered"] <= 10 and m["classes_covered_floor"] == 10  # real digits: all classes
    clf = _read(full.repo, "runs/classifier.json")
    assert m["classifier_hash"] == clf["classifier_hash"]
    assert m["data_hash"] == _read(full.repo, "runs/prepare.json")["data_hash"]
    # The weights evaluated (what register checks before it registers anything).
    assert m["generator_hash"] == _read(full.repo, "runs/train.json")["weights_hash"]
    # Every stage records its wall time as the user waits for it: at least the part it timed itself.
    assert m["stage_wall_time_s"] >= m["eval_time_s"] > 0
    train = data["metrics/train.json"]["data"]
    assert train["stage_wall_time_s"] >= train["wall_time_s"] > 0
    assert data["metrics/register.json"]["data"]["stage_wall_time_s"] > 0


def test_class_histogram_is_a_plot_not_headline_metrics(full) -> None:
    import csv

    m = _read(full.repo, "metrics/evaluate.json")
    assert not [k for k in m if k.startswith(("class_count_", "class_frac_", "class_real_frac_"))]
    with open(full.repo / "plots" / "class_histogram.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == _read(full.repo, "data/prepared/meta.json")["classes"]
    generated = [float(r["generated"]) for r in rows]
    real = [float(r["real"]) for r in rows]
    assert sum(generated) == pytest.approx(1, abs=1e-4) and sum(real) == pytest.approx(1, abs=1e-4)
    # The same rule as classes_covered (a class counts from 20% of its real share).
    assert sum(g >= 0.2 * r and r > 0 for g, r in zip(generated, real, strict=True)) == m["classes_covered"]
    # Beside it, what held-out real images score by the same rule: the floor, class by class.
    classified = [float(r["real_classified"]) for r in rows]
    assert sum(classified) == pytest.approx(1, abs=1e-4)
    floor_covered = sum(c >= 0.2 * r and r > 0 for c, r in zip(classified, real, strict=True))
    assert floor_covered == m["classes_covered_floor"]
    assert all(0 <= float(r["cond_accuracy_real"]) <= 1 for r in rows)
    run = _stage_runs(full.uri)["evaluate"]
    logged = [run.data.metrics[f"class_frac_{c}"] for c in range(len(rows))]
    assert logged == pytest.approx(generated, abs=1e-6)
    # Conditional: the accuracy on the images asked for each class, as MLflow has it.
    per_class = [float(r["cond_accuracy"]) for r in rows]
    assert per_class == pytest.approx([run.data.metrics[f"cond_accuracy_{c}"] for c in range(len(rows))],
                                      abs=1e-6)
    assert (full.repo / "reports" / "class_histogram.png").read_bytes()[:8] == PNG


def test_dvc_plots_show_renders_offline(full) -> None:
    out = full.tmp / "plots-html"
    html = (out / "index.html").read_text()
    for image in ("train_samples.png", "eval_samples.png", "nearest_neighbours.png"):
        assert image in html, image
    pngs = {p.name.rsplit("_reports_", 1)[-1]: p for p in out.rglob("*.png")}  # DVC prefixes the revision
    assert set(pngs) >= {"train_samples.png", "eval_samples.png", "nearest_neighbours.png"}, set(pngs)
    assert all(p.read_bytes()[:8] == PNG for p in pngs.values())
    # Every field the declared plots name exists (the quick-FID plot needs train.eval_every > 0).
    assert "could not find provided field" not in full.plots.stdout + full.plots.stderr, full.plots.stderr
    assert "Classes of generated images" in html
    for png in ("reports/eval_samples.png", "reports/nearest_neighbours.png", "reports/train_curves.png"):
        assert (full.repo / png).read_bytes()[:8] == PNG, png
    from PIL import Image

    # A conditional model's sheets: one row per class (grid_size 20: 2 per row; fixed samples: 8).
    assert Image.open(full.repo / "reports" / "eval_samples.png").size == (2 + 2 * 30, 2 + 10 * 30)
    assert Image.open(full.repo / "reports" / "train_samples.png").size == (2 + 8 * 30, 2 + 10 * 30)


def test_quick_fid_reaches_the_dvc_plot_and_mlflow(full) -> None:
    import csv

    from mlflow.tracking import MlflowClient

    with open(full.repo / "plots" / "train_losses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    fids = [float(r["fid"]) for r in rows]  # eval_every=1: one per epoch, computed by rank 0
    assert all(math.isfinite(v) and v > 0 for v in fids), fids
    run = _stage_runs(full.uri)["train"]
    history = MlflowClient(full.uri).get_metric_history(run.info.run_id, "fid")
    assert sorted((m.step, round(m.value, 3)) for m in history) == [
        (e, round(v, 3)) for e, v in enumerate(fids, start=1)]
    assert _read(full.repo, "metrics/train.json")["last_quick_fid"] == pytest.approx(fids[-1], rel=1e-4)


def test_evaluate_run_matches_dvc_outputs_and_links_upstream(full) -> None:
    from mlflow.tracking import MlflowClient

    runs = _stage_runs(full.uri)
    run = runs["evaluate"]
    assert run.info.status == "FINISHED"
    assert _read(full.repo, "runs/evaluate.json")["run_id"] == run.info.run_id
    for stage in ("prepare", "classifier", "train"):
        assert run.data.tags[f"upstream.{stage}.run_id"] == _read(full.repo, f"runs/{stage}.json")["run_id"]
    assert run.data.tags["upstream.train.run_id"] == runs["train"].info.run_id
    m = _read(full.repo, "metrics/evaluate.json")
    for key in ("fid", "fid_floor", "fid_ratio", "kid_mean", "is_mean", "precision", "recall", "coverage",
                "classes_covered", "n_samples", "stage_wall_time_s"):
        assert run.data.metrics[key] == pytest.approx(m[key], rel=1e-5, abs=1e-6), key
    assert run.data.params["evaluate.n_samples"] == str(N)
    files = {a.path for a in MlflowClient(full.uri).list_artifacts(run.info.run_id, "samples")}
    assert {"samples/eval_samples.png", "samples/nearest_neighbours.png"} <= files
    # The headline figures are on the train run's logged model too (its MLflow page), with the data.
    model = MlflowClient(full.uri).get_logged_model(_read(full.repo, "runs/train.json")["model_id"])
    on_model = {x.key: x for x in model.metrics}
    for key in ("fid", "fid_floor", "fid_ratio", "recall", "classes_covered"):
        assert on_model[key].value == pytest.approx(m[key], rel=1e-5, abs=1e-6), key
        assert on_model[key].run_id == run.info.run_id
        assert on_model[key].dataset_digest == m["data_hash"][:36]
    # One `dvc repro`: its stage runs share one parent run.
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs.values()}
    assert len(parents) == 1 and None not in parents, parents


def test_register_decision_follows_the_gate(full) -> None:
    m = _read(full.repo, "metrics/evaluate.json")
    result = _read(full.repo, "runs/register.json")
    # A new store has no champion: passing the (relaxed) gate makes version 1 the champion.
    assert (result["decision"], str(result["version"])) == ("champion", "1"), result
    assert "no champion yet and the gate passes" in result["reason"]
    assert m["conditional"] is True and len(m["eval_code_hash"]) == 64
    assert math.isfinite(m["data_copying"]) and math.isfinite(m["data_copying_floor"])
    run = _stage_runs(full.uri)["register"]
    assert run.data.tags["register.decision"] == result["decision"]
    from mlflow.tracking import MlflowClient

    from ganmodel.tracking.models import version_model_id

    mv = MlflowClient(full.uri).get_model_version(result["model_name"], str(result["version"]))
    assert version_model_id(mv) == _read(full.repo, "runs/train.json")["model_id"]
    assert not [k for k in mv.tags if k.startswith("metric.")]
    # The version records the protocol its figures were measured under, evaluation code included.
    assert mv.tags["protocol.eval_code_hash"] == m["eval_code_hash"]
    assert mv.tags["protocol.conditional"] == "true" and mv.tags["protocol.n_samples"] == str(N)
    assert run.data.tags["upstream.evaluate.run_id"] == _read(full.repo, "runs/evaluate.json")["run_id"]
