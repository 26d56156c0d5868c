"""The register gate on a real (sqlite) MLflow registry: champion/challenger aliases, protocol
checks, idempotent re-registration by weights hash, the tags every version carries, metrics on the
logged model, and weights that were not evaluated refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow_helpers import (
    CLASSIFIER_HASH,
    DATA_HASH,
    eval_metrics,
    make_generator,
    register_like_pipeline,
    unique_name,
    weights_of,
)

from ganmodel.config import RegisterParams
from ganmodel.errors import GanModelError
from ganmodel.registry.gate import (
    CHALLENGER,
    CHAMPION,
    MODEL_DESCRIPTION,
    Champion,
    Protocol,
    check_metrics,
    decide,
)
from ganmodel.tracking.models import version_model_id

pytest_plugins = ["fixtures_mlflow"]  # mlflow_store, mlflow_server

CFG = dict(max_fid_ratio=20.0, min_classes_covered=8, min_data_copying=-3.0)


# -- the gate as a pure function (no MLflow) ---------------------------------------------------


def _champion(version: str = "1", **metrics) -> Champion:
    m = eval_metrics(**metrics)
    return Champion(version, Protocol.from_metrics(m), float(m["fid"]))


@pytest.mark.parametrize(
    ("metrics", "champion", "decision", "words"),
    [
        (dict(fid=5.0), None, CHAMPION, "no champion yet"),
        (dict(fid=5.0), dict(fid=6.0), CHAMPION, "beats champion v1"),
        (dict(fid=6.0), dict(fid=6.0), CHALLENGER, "does not beat"),  # a tie does not move it
        (dict(fid=7.0), dict(fid=6.0), CHALLENGER, "does not beat"),
        (dict(fid=1.0, eval_seed=7), dict(fid=6.0), CHALLENGER, "eval_seed 7 vs 1234"),
        (dict(fid=1.0, classifier_hash="e" * 64), dict(fid=6.0), CHALLENGER, "classifier_hash"),
        (dict(fid=1.0, data_hash="f" * 64), dict(fid=6.0), CHALLENGER, "data_hash"),
        (dict(fid=1.0, eval_code_hash="a" * 64), dict(fid=6.0), CHALLENGER, "eval_code_hash aaaaaaaaaaaa vs"),
        (dict(fid=1.0, conditional=True), dict(fid=6.0), CHALLENGER, "conditional true vs false"),
        (dict(fid=1.0, data_copying=-9.0), None, CHALLENGER, "data_copying -9 < min_data_copying -3"),
        (dict(fid=1.0, fid_ratio=25.0), None, CHALLENGER, "fid_ratio 25 > max_fid_ratio 20"),
        (dict(fid=1.0, classes_covered=7), dict(fid=6.0), CHALLENGER,
         "classes_covered 7 < min_classes_covered 8"),
    ],
)
def test_decide(metrics, champion, decision, words):
    champ = _champion(**champion) if champion is not None else None
    d = decide(eval_metrics(**metrics), RegisterParams(**CFG), champ, version="2")
    assert d.decision == decision
    assert words in d.reason


def test_decide_champion_without_protocol_tags_is_not_compared():
    champ = Champion("1", None, 100.0)
    d = decide(eval_metrics(fid=1.0), RegisterParams(**CFG), champ, version="2")
    assert (d.decision, "no recorded evaluation protocol" in d.reason) == (CHALLENGER, True)


def test_protocol_reads_float_n_samples_as_int():
    a, b = eval_metrics(n_samples=2000.0), eval_metrics(n_samples=2000)
    assert Protocol.from_metrics(a) == Protocol.from_metrics(b)


def test_protocol_round_trips_through_version_tags():
    p = Protocol.from_metrics(eval_metrics(conditional=True))
    assert p.tags()["protocol.conditional"] == "true"
    assert Protocol.from_tags(p.tags()) == p


def test_the_gate_defaults_are_the_shipped_params(repo_root):
    """One place for the thresholds: the code's defaults are what params.yaml ships."""
    import yaml

    shipped = yaml.safe_load((repo_root / "params.yaml").read_text())["register"]
    assert RegisterParams().model_dump() == RegisterParams(**shipped).model_dump()


@pytest.mark.parametrize(("drop", "bad"), [("fid", None), ("eval_seed", None), ("generator_hash", None),
                                            ("eval_code_hash", None), ("conditional", None),
                                            ("data_copying", None), (None, {"conditional": "maybe"}),
                                            (None, {"fid": "nan?"}), (None, {"n_samples": 10.5}),
                                            (None, {"fid": float("nan")}), (None, {"generator_hash": "abc"})])
def test_check_metrics_rejects_incomplete_or_bad(drop, bad):
    m = eval_metrics(**(bad or {}))
    if drop:
        del m[drop]
    with pytest.raises(GanModelError):
        check_metrics(m)


# -- on a real registry --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generators(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("generators")
    return [make_generator(d / f"g{i}.pt", seed=i) for i in range(4)]


def _register(store, name: str, gen: Path, metrics: dict, **cfg) -> tuple[dict, dict[str, str]]:
    return register_like_pipeline(store.uri, store.experiment_id, name, gen, metrics, **{**CFG, **cfg})


def _client(store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store.uri)


def _alias(client, name: str, alias: str) -> str | None:
    v = client.get_registered_model(name).aliases.get(alias)
    return None if v is None else str(v)


def test_first_registration_becomes_champion_and_is_tagged(mlflow_store, generators, capsys):
    from ganmodel.tracking.runs import git_commit

    name = unique_name()
    metrics = eval_metrics(fid=12.5, class_count_3=200.0)
    out, run_ids = _register(mlflow_store, name, generators[0], metrics)
    assert out["decision"] == CHAMPION and out["version"] == 1 and out["champion_version"] == 1
    assert out["created"] is True
    printed = capsys.readouterr()
    assert "champion" in printed.out
    assert "already exists" not in printed.out + printed.err  # MLflow announces a new model as new

    client = _client(mlflow_store)
    assert _alias(client, name, CHAMPION) == "1"
    assert client.get_registered_model(name).description == MODEL_DESCRIPTION
    mv = client.get_model_version(name, "1")
    tags = mv.tags
    # Lineage and the gate's decision only: the metrics live on the logged model.
    assert not [k for k in tags if k.startswith(("metric.", "param."))] and len(tags) <= 18, sorted(tags)
    assert version_model_id(mv) == out["model_id"]
    on_model = {m.key: m.value for m in client.get_logged_model(out["model_id"]).metrics}
    assert on_model["fid"] == 12.5 and on_model["n_samples"] == 2000.0
    assert tags["protocol.n_samples"] == "2000" and tags["protocol.eval_seed"] == "1234"
    assert tags["protocol.eval_code_hash"] == "e" * 64 and tags["protocol.conditional"] == "false"
    assert tags["data.hash"] == DATA_HASH and tags["classifier.hash"] == CLASSIFIER_HASH
    # (other people edit tracked files meanwhile: compare without the -dirty suffix)
    assert tags["git.commit"].removesuffix("-dirty") == git_commit(".").removesuffix("-dirty") != "unknown"
    for stage, run_id in run_ids.items():
        assert tags[f"run_id.{stage}"] == run_id
    assert tags["weights_hash"] == weights_of(generators[0])
    assert tags["gate.decision"] == CHAMPION and "no champion yet" in tags["gate.reason"]
    assert mv.run_id == run_ids["train"]  # the version is the train run's logged model


def test_worse_then_better_then_same_weights(mlflow_store, generators):
    name = unique_name()
    client = _client(mlflow_store)
    first, _ = _register(mlflow_store, name, generators[0], eval_metrics(fid=10.0))
    assert first["decision"] == CHAMPION

    worse, _ = _register(mlflow_store, name, generators[1], eval_metrics(fid=11.0))
    assert (worse["version"], worse["decision"], worse["champion_version"]) == (2, CHALLENGER, 1)
    assert "does not beat champion v1" in worse["reason"]
    assert (_alias(client, name, CHAMPION), _alias(client, name, CHALLENGER)) == ("1", "2")
    assert client.get_model_version(name, "2").tags["gate.decision"] == CHALLENGER

    better, _ = _register(mlflow_store, name, generators[2], eval_metrics(fid=9.0))
    assert (better["version"], better["decision"], better["champion_version"]) == (3, CHAMPION, 3)
    assert "beats champion v1" in better["reason"]
    assert _alias(client, name, CHAMPION) == "3"
    assert client.get_model_version(name, "1").tags["gate.superseded_by"] == "3"

    # Same weights again: no new version, the decision is re-applied.
    again, _ = _register(mlflow_store, name, generators[2], eval_metrics(fid=9.0))
    assert (again["version"], again["created"], again["decision"]) == (3, False, CHAMPION)
    assert "already the champion" in again["reason"]
    again_worse, _ = _register(mlflow_store, name, generators[1], eval_metrics(fid=11.0))
    assert (again_worse["version"], again_worse["created"], again_worse["decision"]) == (2, False, CHALLENGER)
    assert len(client.search_model_versions(f"name = '{name}'")) == 3
    assert (_alias(client, name, CHAMPION), _alias(client, name, CHALLENGER)) == ("3", "2")


def test_other_protocol_is_not_compared(mlflow_store, generators):
    name = unique_name()
    client = _client(mlflow_store)
    _register(mlflow_store, name, generators[0], eval_metrics(fid=10.0))
    # Much better FID, but at another N: FID is biased at finite N, so it is not comparable.
    other, _ = _register(mlflow_store, name, generators[1], eval_metrics(fid=2.0, n_samples=500.0))
    assert (other["decision"], other["champion_version"]) == (CHALLENGER, 1)
    assert "protocol differs" in other["reason"] and "n_samples 500 vs 2000" in other["reason"]
    assert (_alias(client, name, CHAMPION), _alias(client, name, CHALLENGER)) == ("1", "2")
    assert "protocol differs" in client.get_model_version(name, "2").tags["gate.reason"]


def test_the_champion_is_held_to_the_evaluation_its_version_records(mlflow_store, generators):
    """Evaluating the champion's model again under another protocol puts a newer `fid` on its
    logged model; the gate still compares with the figures of the evaluate run the version's
    protocol tags describe."""
    import mlflow

    from ganmodel.tracking.models import log_model_metrics

    name = unique_name()
    first, _ = _register(mlflow_store, name, generators[0], eval_metrics(fid=10.0))
    mlflow.set_tracking_uri(mlflow_store.uri)
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id):  # e.g. N=500, seed 7: far lower FID
        log_model_metrics(first["model_id"], {"fid": 1.0, "n_samples": 500.0, "eval_seed": 7.0})
    better, _ = _register(mlflow_store, name, generators[1], eval_metrics(fid=9.0))
    assert better["decision"] == CHAMPION and "beats champion v1 fid 10" in better["reason"]


@pytest.mark.parametrize(("metrics", "words"), [
    (dict(fid=5.0, fid_ratio=50.0), "fid_ratio 50 > max_fid_ratio 20"),
    (dict(fid=5.0, classes_covered=3.0), "classes_covered 3 < min_classes_covered 8"),
    (dict(fid=5.0, data_copying=-12.0), "data_copying -12 < min_data_copying -3"),
])
def test_gate_failure_makes_a_challenger(mlflow_store, generators, metrics, words):
    name = unique_name()
    client = _client(mlflow_store)
    # Without a champion: the failing version does not become one.
    out, _ = _register(mlflow_store, name, generators[3], eval_metrics(**metrics))
    assert (out["decision"], out["champion_version"]) == (CHALLENGER, None)
    assert "gate failed" in out["reason"] and words in out["reason"] and "no champion set" in out["reason"]
    assert _alias(client, name, CHAMPION) is None and _alias(client, name, CHALLENGER) == "1"
    tags = client.get_model_version(name, "1").tags
    assert tags["gate.decision"] == CHALLENGER and words in tags["gate.reason"]

    # With a champion: a better FID does not make up for a failed threshold.
    champ, _ = _register(mlflow_store, name, generators[0], eval_metrics(fid=10.0))
    assert (champ["version"], champ["decision"]) == (2, CHAMPION)
    again, _ = _register(mlflow_store, name, generators[3], eval_metrics(**metrics))
    assert (again["version"], again["decision"], again["champion_version"]) == (1, CHALLENGER, 2)
    assert words in again["reason"] and "champion v2 unchanged" in again["reason"]
    assert (_alias(client, name, CHAMPION), _alias(client, name, CHALLENGER)) == ("2", "1")


def test_bad_metrics_create_nothing(mlflow_store, generators):
    name = unique_name()
    m = eval_metrics(generator_hash=weights_of(generators[0]))
    del m["classifier_hash"]
    with pytest.raises(GanModelError, match="classifier_hash"):
        _register(mlflow_store, name, generators[0], m)
    assert _client(mlflow_store).search_registered_models(f"name = '{name}'") == []


def test_weights_that_were_not_evaluated_are_refused(mlflow_store, generators):
    name = unique_name()
    # The evaluation describes generators[1]; the file to register is generators[0].
    with pytest.raises(GanModelError, match="were not evaluated") as exc:
        _register(mlflow_store, name, generators[0], eval_metrics(generator_hash=weights_of(generators[1])))
    assert len(str(exc.value).splitlines()) == 1
    assert _client(mlflow_store).search_registered_models(f"name = '{name}'") == []


# -- the stage script, against a real tracking server ------------------------------------------


@pytest.mark.integration
def test_register_stage_against_a_tracking_server(mlflow_server, tmp_path):
    import json

    from mlflow.tracking import MlflowClient
    from mlflow_helpers import BIN, run_register_stage, subprocess_env, write_stage_inputs

    name = unique_name()
    args = write_stage_inputs(tmp_path, name, mlflow_server, experiment="server-test")
    proc = run_register_stage(tmp_path, args, mlflow_server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"register: {name} v1 (new version) -> champion" in proc.stdout
    link = json.loads((tmp_path / "runs" / "register.json").read_text())
    assert (link["model_name"], link["version"], link["decision"], link["champion_version"]) == (
        name, 1, CHAMPION, 1)
    summary = json.loads((tmp_path / "metrics" / "register.json").read_text())
    assert summary.pop("stage_wall_time_s") > 0
    assert summary == {"version": 1, "champion_version": 1, "is_champion": 1, "created": 1}

    client = MlflowClient(mlflow_server)
    assert str(client.get_registered_model(name).aliases[CHAMPION]) == "1"
    mv = client.get_model_version(name, "1")
    upstream = {s: json.loads((tmp_path / "runs" / f"{s}.json").read_text())["run_id"]
                for s in ("prepare", "classifier", "train", "evaluate")}
    for stage, run_id in {**upstream, "register": link["run_id"]}.items():
        assert mv.tags[f"run_id.{stage}"] == run_id
    run = client.get_run(link["run_id"])
    assert run.data.tags["pipeline.stage"] == "register" and run.info.status == "FINISHED"
    assert run.data.tags["upstream.evaluate.run_id"] == upstream["evaluate"]
    # The version is the train run's logged model, registered as is.
    train_link = json.loads((tmp_path / "runs" / "train.json").read_text())
    assert version_model_id(mv) == train_link["model_id"]

    # And the served weights come back through the server.
    out = tmp_path / "s.npy"
    gen = subprocess.run([str(BIN / "ganmodel"), "generate", "--model", f"models:/{name}@champion", "-n", "4",
                          "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=subprocess_env(MLFLOW_TRACKING_URI=mlflow_server))
    assert gen.returncode == 0, gen.stderr
    assert np.load(out).shape == (4, 1, 28, 28)


def test_register_stage_rejects_metrics_that_are_not_an_object(mlflow_store, tmp_path):
    import json

    from mlflow_helpers import run_register_stage, write_stage_inputs

    args = write_stage_inputs(tmp_path, unique_name(), mlflow_store.uri)
    (tmp_path / "metrics" / "evaluate.json").write_text(json.dumps(["data_hash", "fid"]))
    proc = run_register_stage(tmp_path, args, mlflow_store.uri)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == "error: metrics/evaluate.json: expected a JSON object of metrics"
    assert not (tmp_path / "runs" / "register.json").exists()


def test_register_stage_refuses_a_generator_that_was_not_evaluated(mlflow_store, tmp_path):
    from mlflow_helpers import run_register_stage, write_stage_inputs

    name = unique_name()
    args = write_stage_inputs(tmp_path, name, mlflow_store.uri)
    make_generator(tmp_path / "models" / "generator.pt", seed=99)  # other weights than evaluated
    proc = run_register_stage(tmp_path, args, mlflow_store.uri)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "were not evaluated" in lines[0] and "models/generator.pt" in lines[0], lines
    assert not (tmp_path / "runs" / "register.json").exists()
    assert _client(mlflow_store).search_registered_models(f"name = '{name}'") == []
