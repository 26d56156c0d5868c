"""The pyfunc generator model: input validation, loading from the registry, and a real
`mlflow models serve` answering good requests with images and bad ones with 4xx."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow_helpers import (
    BIN,
    free_port,
    make_generator,
    register_like_pipeline,
    stop,
    subprocess_env,
    unique_name,
    wait_http,
)

from ganmodel.registry.serving import to_labels, to_latents

pytest_plugins = ["fixtures_mlflow"]  # mlflow_store
Z = 100


@pytest.mark.parametrize("good", [
    np.zeros((3, Z), np.float32), np.zeros((3, Z), np.float64), np.zeros((3, Z), np.int64),
    pd.DataFrame(np.zeros((3, Z))), torch.zeros(3, Z), [[0.0] * Z] * 3, {"z": np.zeros((3, Z))},
])
def test_to_latents_accepts_numeric_2d(good):
    z = to_latents(good, Z)
    assert z.shape == (3, Z) and z.dtype == np.float32


def test_to_latents_accepts_one_vector():
    assert to_latents(np.zeros(Z), Z).shape == (1, Z)


@pytest.mark.parametrize(("bad", "words"), [
    (np.zeros((3, Z - 1)), "shape [n, 100]"),
    (np.zeros((3, Z, 1)), "shape [n, 100]"),
    (np.zeros((0, Z)), "1 to"),
    (np.full((2, Z), np.nan), "NaN"),
    (np.full((2, Z), np.inf), "NaN or infinite"),
    ([["a"] * Z], "numbers"),
    (np.array([["a"] * Z], dtype=object), "numbers"),
    ([[0.0] * Z, [0.0] * (Z - 1)], "2-D numeric array"),
    ({"z": np.zeros((1, Z)), "w": np.zeros((1, Z))}, "one latent tensor"),
])
def test_to_latents_rejects_with_invalid_parameter_value(bad, words):
    with pytest.raises(MlflowException) as exc:
        to_latents(bad, Z)
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    assert exc.value.get_http_status_code() == 400
    assert words in exc.value.message


@pytest.mark.parametrize(("labels", "n_classes", "ok"), [
    (None, 10, True), ([], 10, True), ([0, 9], 10, True), ([1], 10, False), ([0, 10], 10, False),
    ([-1, 0], 10, False), ([0.5, 1.0], 10, False), ([0, 1], 0, False), (None, 0, True), ([], 0, True),
])
def test_labels_are_validated(labels, n_classes, ok):
    if ok:
        to_labels(labels, 2, n_classes)
    else:
        with pytest.raises(MlflowException) as exc:
            to_labels(labels, 2, n_classes)
        assert exc.value.get_http_status_code() == 400


@pytest.fixture(scope="module")
def registered(mlflow_store, tmp_path_factory):
    """A generator registered as champion; returns (name, generator module)."""
    from ganmodel.artifacts import load_generator

    gen = make_generator(tmp_path_factory.mktemp("gen") / "generator.pt", seed=7)
    name = unique_name()
    register_like_pipeline(mlflow_store.uri, mlflow_store.experiment_id, name, gen)
    return name, load_generator(gen)[0]


def test_logging_the_model_pickles_nothing(mlflow_store, tmp_path, caplog, recwarn):
    """Models-from-code: no CloudPickle warning, no pickled python_model in the model directory,
    and only the serving modules of ganmodel as its code."""
    import logging

    import mlflow

    from ganmodel.registry.serving import SERVING_MODULES
    from ganmodel.tracking.models import log_generator_model

    gen = make_generator(tmp_path / "generator.pt", seed=3)
    caplog.set_level(logging.INFO)
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id):
        info = log_generator_model(gen)
    said = caplog.text + " ".join(str(w.message) for w in recwarn)
    assert "cloudpickle" not in said.lower(), said
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model")))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith(".pkl")], sorted(files)
    assert "artifacts/generator.pt" in files
    code = {f.removeprefix("code/ganmodel/") for f in files if f.startswith("code/ganmodel/")}
    allowed = {m for m in SERVING_MODULES if m.endswith(".py")}
    assert "registry/serving.py" in code and "artifacts.py" in code
    assert all(c in allowed or c.startswith("networks/") for c in code), sorted(code)
    assert not [c for c in code if c.startswith(("config/", "training/", "tracking/"))]


def test_loading_the_served_model_imports_no_training_stack(registered, mlflow_store):
    """In a fresh interpreter: load the registered pyfunc and predict; the ganmodel modules that got
    imported are the serving ones only (no params, training, tracking or evaluation code)."""
    name, _ = registered
    code = (
        "import sys, json, numpy as np, mlflow\n"
        f"m = mlflow.pyfunc.load_model('models:/{name}@champion')\n"
        f"m.predict(np.zeros((2, {Z}), np.float32))\n"
        "print(json.dumps(sorted(k for k in sys.modules if k.startswith('ganmodel'))))\n"
    )
    proc = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(mlflow_store.uri.removeprefix("sqlite:///")).parent,
                          env=subprocess_env(MLFLOW_TRACKING_URI=mlflow_store.uri, PYTHONPATH=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    allowed = {"ganmodel", "ganmodel.errors", "ganmodel.io", "ganmodel.artifacts", "ganmodel.registry",
               "ganmodel.registry.serving", "ganmodel.networks", "ganmodel.shapes"}
    extra = {m for m in imported if m not in allowed and not m.startswith("ganmodel.networks.")}
    assert "ganmodel.registry.serving" in imported and not extra, sorted(extra)


def _expected(g, z: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return g(torch.from_numpy(z)).numpy()


def test_pyfunc_from_registry_matches_the_generator(registered):
    import mlflow

    name, g = registered
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    sig = model.metadata.signature
    spec = {k: json.loads(sig.to_dict()[k])[0]["tensor-spec"] for k in ("inputs", "outputs")}
    assert spec == {"inputs": {"dtype": "float32", "shape": [-1, Z]},
                    "outputs": {"dtype": "float32", "shape": [-1, 1, 28, 28]}}
    z = np.random.default_rng(0).standard_normal((4, Z)).astype(np.float32)
    out = model.predict(z)
    assert out.shape == (4, 1, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out, _expected(g, z), atol=1e-6)
    with pytest.raises(MlflowException) as exc:
        model.predict(np.zeros((2, Z + 1), np.float32))
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"


def _post(url: str, body: object) -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@contextlib.contextmanager
def _serve(model_uri: str, tracking_uri: str, root: Path):
    """`mlflow models serve` of `model_uri` on a free port; yields its base URL."""
    port = free_port()
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri))
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/ping", 90, proc)
        except (TimeoutError, RuntimeError) as err:
            tail = (root / "serve.log").read_text()[-3000:]
            raise RuntimeError(f"mlflow models serve: {err}\n{tail}") from None
        yield url
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def served(registered, mlflow_store, tmp_path_factory):
    name, _ = registered
    with _serve(f"models:/{name}@champion", mlflow_store.uri, tmp_path_factory.mktemp("serve")) as url:
        yield url


@pytest.mark.integration
def test_models_serve_answers_images_and_rejects_bad_input(served, registered):
    _, g = registered
    z = np.random.default_rng(1).standard_normal((3, Z)).astype(np.float32)
    status, body = _post(f"{served}/invocations", {"inputs": z.tolist()})
    assert status == 200, body
    pred = np.asarray(body["predictions"], dtype=np.float32)
    assert pred.shape == (3, 1, 28, 28)
    assert pred.min() >= -1.0 and pred.max() <= 1.0
    np.testing.assert_allclose(pred, _expected(g, z), atol=1e-5)

    bad = [
        {"inputs": z.tolist(), "params": {"labels": [0, 1, 2]}},  # labels for an unconditional model
        {"inputs": np.zeros((2, Z - 1)).tolist()},          # wrong width
        {"inputs": "not a tensor"},                          # a string
        {"inputs": [["x"] * Z]},                             # strings in the tensor
        {"inputs": z.tolist(), "params": {"labels": [1]}},   # labels of the wrong length
        "{not json",
    ]
    for body_in in bad:
        status, body = _post(f"{served}/invocations", body_in)
        assert 400 <= status < 500, (body_in if isinstance(body_in, str) else str(body_in)[:80], status, body)
        assert body.get("message"), body

    # Still serving after the bad requests.
    status, body = _post(f"{served}/invocations", {"inputs": z[:1].tolist()})
    assert status == 200 and np.asarray(body["predictions"]).shape == (1, 1, 28, 28)


# --- a conditional generator over REST: the classifier reads back the asked digits -----------------


@pytest.fixture(scope="module")
def served_conditional(conditional_generator_file, mlflow_store, tmp_path_factory):
    name = unique_name("cgan")
    register_like_pipeline(mlflow_store.uri, mlflow_store.experiment_id, name, conditional_generator_file)
    with _serve(f"models:/{name}@champion", mlflow_store.uri, tmp_path_factory.mktemp("serve-cond")) as url:
        yield url


@pytest.mark.integration
def test_served_conditional_model_makes_the_asked_digits(served_conditional, digit_classifier):
    from ganmodel.evaluation.features import extract

    asked = [3] * 10 + [7] * 10 + [0] * 10
    z = np.random.default_rng(2).standard_normal((len(asked), 64)).astype(np.float32)
    url = f"{served_conditional}/invocations"
    status, body = _post(url, {"inputs": z.tolist(), "params": {"labels": asked}})
    assert status == 200, body
    images = torch.from_numpy(np.asarray(body["predictions"], dtype=np.float32))
    _, logits = extract(digit_classifier, images, 30)
    read_back = (logits.argmax(1) == torch.tensor(asked)).double().mean()
    assert read_back >= 0.8, read_back
    for labels in ([3] * 29, [10] * 30, [-1] * 30):  # wrong length, out of range
        status, body = _post(url, {"inputs": z.tolist(), "params": {"labels": labels}})
        assert status == 400 and body.get("message"), (labels, status, body)
    status, body = _post(url, {"inputs": z[:10].tolist()})
    assert status == 200  # no labels: its classes in turn
    _, logits = extract(digit_classifier, torch.tensor(body["predictions"], dtype=torch.float32), 10)
    assert (logits.argmax(1) == torch.arange(10)).double().mean() >= 0.7


def test_the_logged_schema_states_the_generators_image_shape(mlflow_store, tmp_path):
    """A 3x32x32 generator's logged model says so (signature, MLmodel metadata), from its file's
    meta; a file from before `image_shape` was recorded is MNIST's [1, 28, 28]."""
    import mlflow

    from ganmodel.artifacts import read_model_file, save_generator
    from ganmodel.registry.serving import image_shape, model_metadata, signature
    from ganmodel.tracking.models import log_generator_model

    sd, meta = read_model_file(make_generator(tmp_path / "g.pt", seed=5), "generator")
    colour = {**meta, "image_shape": [3, 32, 32]}  # logging reads the meta only, never runs the weights
    save_generator(sd, colour, tmp_path / "colour.pt")
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id):
        info = log_generator_model(tmp_path / "colour.pt")
    logged = mlflow.models.get_model_info(info.model_uri)
    spec = json.loads(logged.signature.to_dict()["outputs"])[0]["tensor-spec"]
    assert spec == {"dtype": "float32", "shape": [-1, 3, 32, 32]}
    assert logged.metadata["image_shape"] == [3, 32, 32]

    legacy = {k: v for k, v in meta.items() if k != "image_shape"}
    assert image_shape(legacy) == (1, 28, 28) and model_metadata(legacy)["image_shape"] == [1, 28, 28]
    out = json.loads(signature(64, image_shape({"image_shape": [1, 64, 64]})).to_dict()["outputs"])
    assert out[0]["tensor-spec"]["shape"] == [-1, 1, 64, 64]
