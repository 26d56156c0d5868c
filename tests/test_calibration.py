"""Calibration of the evaluate protocol with oracle "generators" (`ganmodel.evaluation.oracles`):
real images served through the generator interface and scored by the very code that scores real
generators (`protocol.evaluate`, the gate's `decide`).

- held-out real images, of the asked class: what a perfect generator scores. fid_ratio within the
  protocol's seed noise of 1, cond_accuracy, CAS and coverage at their floors, every class, no
  copying, and the gate passes;
- training images: a generator that copies its data. FID alone would pass it; the memorisation
  figure flags it and the gate refuses it, naming why;
- one image, always: recall, coverage and the gate fail.

mnist5k with the evaluation classifier's architecture (the `digit_classifier` fixture), N = 400:
B is drawn from val, the held-out oracle from test, so neither overlaps the other or train.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ganmodel.config import EvaluateParams, RegisterParams
from ganmodel.evaluation.oracles import RealImages
from ganmodel.evaluation.protocol import evaluate
from ganmodel.registry.gate import CHALLENGER, CHAMPION, decide

pytestmark = pytest.mark.slow

N = 400
# The held-out oracle's fid_ratio over 10 protocol seeds at N=400 (docs/evaluation.md): mean 1.00,
# sd 0.10, range 0.86-1.19. Three sd either side of 1.
RATIO_NOISE = 0.3
CLASSES = [str(c) for c in range(10)]


@pytest.fixture(scope="module")
def score(mnist5k, digit_classifier):
    cfg = EvaluateParams(n_samples=N, seed=1234, kid_subsets=20, kid_subset_size=200, cas_epochs=8,
                         grid_size=20, nn_rows=2)
    train, val = mnist5k["train"], mnist5k["val"]

    def run(oracle) -> dict[str, float]:
        return evaluate(oracle, digit_classifier, train, val, cfg, CLASSES).metrics

    return run


def _gate(metrics: dict[str, float], repo_root: Path):
    """The gate with the shipped thresholds (params.yaml), no champion yet."""
    shipped = yaml.safe_load((repo_root / "params.yaml").read_text())["register"]
    protocol = {"data_hash": "d" * 64, "classifier_hash": "c" * 64, "eval_code_hash": "e" * 64,
                "conditional": True, "generator_hash": "g" * 64}
    return decide({**metrics, **protocol}, RegisterParams(**shipped), champion=None)


def test_held_out_real_images_score_as_the_floor(score, mnist5k, repo_root):
    test = mnist5k["test"]
    m = score(RealImages(test.images, test.labels, n_classes=10, seed=0))
    assert abs(m["fid_ratio"] - 1) < RATIO_NOISE, m["fid_ratio"]
    assert m["classes_covered"] == 10 and m["class_kl"] < 5 * m["class_kl_floor"] + 0.01
    assert m["cond_accuracy"] == pytest.approx(m["cond_accuracy_floor"], abs=0.03)
    assert m["cas"] == pytest.approx(m["cas_floor"], abs=0.05)
    assert m["coverage"] == pytest.approx(m["coverage_floor"], abs=0.06)
    assert m["recall"] == pytest.approx(m["recall_floor"], abs=0.06)
    assert abs(m["data_copying"]) < 3 and m["train_distance_ratio"] == pytest.approx(1, abs=0.1)
    assert _gate(m, repo_root).decision == CHAMPION


def test_a_generator_that_copies_its_training_images_is_flagged_and_refused(score, mnist5k, repo_root):
    train = mnist5k["train"]
    m = score(RealImages(train.images, train.labels, n_classes=10, seed=0))
    # By FID it is a perfect generator: the reference set is the train split it copies.
    assert m["fid_ratio"] < 1 + RATIO_NOISE
    assert m["data_copying"] < -8 and m["train_distance_ratio"] == 0.0
    assert abs(m["data_copying_floor"]) < 3
    d = _gate(m, repo_root)
    assert d.decision == CHALLENGER and "data_copying" in d.reason and "copies" in d.reason
    assert "fid_ratio" not in d.reason


def test_a_generator_of_one_image_fails_recall_coverage_and_the_gate(score, mnist5k, repo_root):
    one = mnist5k["test"].images[:1]
    m = score(RealImages(one, n_classes=10, by_class=False))
    assert m["recall"] < 0.05 and m["coverage"] < 0.05 and m["recall_floor"] > 0.8
    assert m["classes_covered"] == 1 and m["fid_ratio"] > 20
    d = _gate(m, repo_root)
    assert d.decision == CHALLENGER
    assert "fid_ratio" in d.reason and "classes_covered 1 < min_classes_covered 10" in d.reason
