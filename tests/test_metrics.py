"""Metrics: FID/KID/IS against closed forms and independent numpy/scipy computations, PRDC against
a brute-force reference, class coverage, the metric registry, QuickFID and the full protocol."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import scipy.linalg
import torch

from ganmodel.artifacts import save_classifier
from ganmodel.data.prepared import to_unit_range as to_unit
from ganmodel.errors import GanModelError
from ganmodel.evaluation.coverage import class_coverage
from ganmodel.evaluation.distances import fid_from_features, inception_score, kid_from_features
from ganmodel.evaluation.features import extract, sample_images
from ganmodel.evaluation.metrics import (
    DEFAULT_METRICS,
    METRICS,
    PROTOCOL_METRICS,
    Comparison,
    EvalSpec,
    compare,
    evaluate_generator,
    generate,
    real_sets,
)
from ganmodel.evaluation.prdc import knn_radii, nearest_neighbours, prdc
from ganmodel.evaluation.quick import QuickFID
from ganmodel.evaluation.realstats import compute_stats
from ganmodel.networks import build_generator
from ganmodel.networks.classifier import EvalClassifier

METRIC_KEYS = ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "density",
               "coverage", "classes_covered", "class_kl", "n_samples")


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Non-Gaussian, correlated, partly dead (ReLU) features, like a classifier's penultimate layer."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    return torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift)


@pytest.fixture(scope="module")
def classifier() -> EvalClassifier:
    torch.manual_seed(0)
    return EvalClassifier(feature_dim=16).eval()


# ---- FID ----------------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero():
    f = _features(3000, 64, seed=1)
    scale = float(torch.cov(f.T).trace())
    assert abs(fid_from_features(f, f)) < 1e-9 * scale


def test_fid_between_gaussians_matches_the_closed_form():
    # Commuting covariances S_i = Q diag(v_i) Q^T (non-diagonal): (S1 S2)^(1/2) = Q diag(sqrt(v1 v2)) Q^T,
    # so FID = |mu1 - mu2|^2 + sum_j (sqrt(v1_j) - sqrt(v2_j))^2.
    d, n = 8, 20000
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.linspace(-1, 1, d, dtype=torch.float64)
    v1 = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    v2 = torch.linspace(2.0, 0.25, d, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    a = (torch.randn(n, d, generator=g, dtype=torch.float64) * v1.sqrt()) @ q.T + mu1
    b = (torch.randn(n, d, generator=g, dtype=torch.float64) * v2.sqrt()) @ q.T + mu2
    exact = float((mu1 - mu2).square().sum() + (v1.sqrt() - v2.sqrt()).square().sum())  # 5.64
    # Over 40 seeds the estimate's sd is 0.055 (dominated by the mean term, 2 sqrt(dmu'(S1+S2)dmu/N)).
    assert fid_from_features(a, b) == pytest.approx(exact, abs=0.25)


def test_fid_matches_scipy_sqrtm_on_the_same_features():
    real, fake = _features(2000, 64, seed=2).numpy(), _features(1500, 64, seed=3, shift=0.3).numpy()
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    got = fid_from_features(torch.from_numpy(real), torch.from_numpy(fake))
    assert expected > 1.0
    assert got == pytest.approx(expected, rel=1e-6)  # agrees to ~1e-13 here


def test_fid_rejects_nan_features():
    f = _features(50, 4, seed=0)
    f[3, 1] = float("nan")
    with pytest.raises(GanModelError, match="NaN"):
        fid_from_features(f, f)


def test_metrics_never_sync_across_processes(monkeypatch):
    # In Ray Train only rank 0 evaluates; a torchmetrics all-gather on compute() would hang there.
    # With a "distributed" process but no process group, any attempt to sync raises.
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    f = _features(200, 8, seed=4)
    assert math.isfinite(fid_from_features(f, f + 0.1))
    assert all(map(math.isfinite, kid_from_features(f, f + 0.1, subsets=2, subset_size=50)))
    assert all(map(math.isfinite, inception_score(f)))


# ---- KID and IS -----------------------------------------------------------------------------------

def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    k = lambda a, b: (a @ b.T / x.shape[1] + 1.0) ** 3  # noqa: E731
    m = x.shape[0]
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def test_kid_matches_numpy_mmd_and_is_seeded():
    real, fake = _features(300, 16, seed=5), _features(300, 16, seed=6, shift=0.2)
    # One subset of all samples: no sampling, so the value is the plain unbiased MMD^2.
    mean, std = kid_from_features(real, fake, subsets=1, subset_size=300)
    assert mean == pytest.approx(_mmd2_unbiased(real.numpy(), fake.numpy()), rel=1e-9)
    assert std == 0.0
    state = torch.get_rng_state()
    first = kid_from_features(real, fake, subsets=10, subset_size=100, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG stream is untouched
    assert kid_from_features(real, fake, subsets=10, subset_size=100, seed=3) == first
    assert kid_from_features(real, fake, subsets=10, subset_size=100, seed=4) != first
    with pytest.raises(GanModelError, match="kid_subset_size"):
        kid_from_features(real, fake, subsets=1, subset_size=301)


def test_inception_score_bounds_and_numpy_reference():
    labels = torch.arange(1000) % 10
    confident = torch.nn.functional.one_hot(labels, 10).double() * 50
    assert inception_score(confident, splits=1) == pytest.approx((10.0, 0.0), rel=1e-6)
    assert inception_score(torch.zeros(1000, 10, dtype=torch.float64).index_fill_(1, torch.tensor([3]), 50),
                           splits=1)[0] == pytest.approx(1.0, abs=1e-6)
    logits = torch.randn(500, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    p = torch.softmax(logits, 1).numpy()
    expected = math.exp(float((p * (np.log(p) - np.log(p.mean(0, keepdims=True)))).sum(1).mean()))
    assert inception_score(logits, splits=1)[0] == pytest.approx(expected, rel=1e-9)
    assert inception_score(logits, seed=1) == inception_score(logits, seed=1)


# ---- precision / recall / density / coverage --------------------------------------------------------

def _brute_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The definitions, pair by pair (radius: k-th nearest other sample; inside: strict <)."""
    def dist(a, b):
        return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))

    def radii(x):
        return [sorted(dist(x[i], x[j]) for j in range(len(x)) if j != i)[k - 1] for i in range(len(x))]

    rr, rf = radii(real), radii(fake)
    d = [[dist(r, f) for f in fake] for r in real]
    n, m = len(real), len(fake)
    return {
        "precision": sum(any(d[i][j] < rr[i] for i in range(n)) for j in range(m)) / m,
        "recall": sum(any(d[i][j] < rf[j] for j in range(m)) for i in range(n)) / n,
        "density": sum(d[i][j] < rr[i] for i in range(n) for j in range(m)) / (k * m),
        "coverage": sum(min(d[i]) < rr[i] for i in range(n)) / n,
        "radii": rr,
    }


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_brute_force(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(41, 5))
    fake = rng.normal(size=(33, 5)) * 1.3 + 0.4
    ref = _brute_prdc(real, fake, k)
    got = prdc(torch.from_numpy(real), torch.from_numpy(fake), k=k, chunk=7)  # 7: exercises chunking
    for key in ("precision", "recall", "density", "coverage"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9), key
    assert np.allclose(knn_radii(torch.from_numpy(real), k, chunk=6).numpy(), ref["radii"], rtol=0, atol=1e-9)
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1  # the test data is not degenerate


def test_prdc_of_identical_sets_is_perfect():
    f = _features(200, 8, seed=8)
    got = prdc(f, f, k=3)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0


def test_nearest_neighbours_match_argsort():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 4)), rng.normal(size=(25, 4))
    d = np.linalg.norm(fake[:, None, :] - real[None, :, :], axis=2)
    got = nearest_neighbours(torch.from_numpy(fake), torch.from_numpy(real), k=3, chunk=4)
    assert got.shape == (25, 3)
    assert np.array_equal(got.numpy(), np.argsort(d, axis=1)[:, :3])


# ---- class coverage -------------------------------------------------------------------------------

def test_class_coverage_detects_collapse():
    real_labels = torch.arange(1000) % 10
    collapsed = class_coverage(torch.nn.functional.one_hot(torch.full((500,), 7), 10).float(), real_labels)
    assert collapsed["classes_covered"] == 1
    assert collapsed["class_kl"] == pytest.approx(math.log(10), rel=1e-4)
    assert collapsed["class_frac_7"] == 1.0 and collapsed["class_count_7"] == 500
    balanced = class_coverage(torch.nn.functional.one_hot(torch.arange(500) % 10, 10).float(), real_labels)
    assert balanced["classes_covered"] == 10
    assert abs(balanced["class_kl"]) < 1e-5


def test_class_coverage_threshold_is_relative_to_the_real_share():
    # Class 0 gets 1% of the samples (10% of its real share): below the default 20%, above 5%.
    preds = torch.cat([torch.zeros(10, dtype=torch.long), 1 + torch.arange(990) % 9])
    logits = torch.nn.functional.one_hot(preds, 10).float()
    assert class_coverage(logits)["classes_covered"] == 9
    assert class_coverage(logits, min_relative_share=0.05)["classes_covered"] == 10


def test_class_coverage_reports_the_target_shares():
    real_labels = torch.cat([torch.zeros(300, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    all_zero = torch.nn.functional.one_hot(torch.zeros(50, dtype=torch.long), 3).float()
    out = class_coverage(all_zero, real_labels)
    assert [out[f"class_real_frac_{c}"] for c in range(3)] == [0.75, 0.25, 0.0]
    assert out["classes_covered"] == 1  # class 1 is missing; class 2 is absent from the real set
    uniform = class_coverage(torch.nn.functional.one_hot(torch.arange(8) % 4, 4).float())
    assert [uniform[f"class_real_frac_{c}"] for c in range(4)] == [0.25] * 4


# ---- features and sampling ------------------------------------------------------------------------

def test_extract_accepts_uint8_and_unit_range_floats(classifier, random_images):
    images = random_images[:40]
    f8, l8 = extract(classifier, images, batch_size=16, device="cpu")
    ff, lf = extract(classifier, images.float() / 127.5 - 1, batch_size=40, device="cpu")
    assert f8.dtype == l8.dtype == torch.float64 and f8.shape == (40, 16) and l8.shape == (40, 10)
    assert torch.allclose(f8, ff, atol=1e-5) and torch.allclose(l8, lf, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        extract(classifier, images.float(), batch_size=16, device="cpu")  # [0, 255] floats: a bug


def test_sample_images_is_seeded_and_restores_mode():
    torch.manual_seed(0)
    g = build_generator("dcgan", 16).train()
    state = torch.get_rng_state()
    a = sample_images(g, 30, seed=5, batch_size=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert g.training
    assert torch.allclose(a, sample_images(g, 30, seed=5, batch_size=30), atol=1e-6)
    assert not torch.allclose(a, sample_images(g, 30, seed=6))
    assert a.shape == (30, 1, 28, 28) and a.abs().max() <= 1


# ---- the metric registry ----------------------------------------------------------------------------

def test_metrics_are_chosen_by_name(classifier, random_images):
    real, _ = extract(classifier, random_images[:60], batch_size=60)
    fake, logits = extract(classifier, random_images[60:120], batch_size=60)
    c = Comparison(real, torch.arange(60) % 10, fake, logits, seed=0, kid_subsets=3, kid_subset_size=30)
    assert set(DEFAULT_METRICS) <= set(METRICS) | set(PROTOCOL_METRICS)
    only_fid = compare(c, ["fid"])
    assert set(only_fid) == {"fid", "n_samples"}
    everything = compare(c, DEFAULT_METRICS)
    assert set(METRIC_KEYS) <= set(everything) and everything["fid"] == only_fid["fid"]
    with pytest.raises(GanModelError, match="unknown metric 'fud'"):
        compare(c, ["fud"])


# ---- QuickFID and the full protocol ---------------------------------------------------------------

def test_quick_fid_is_cheap_finite_and_fixed(tmp_path, random_images, monkeypatch):
    import ganmodel.evaluation.quick as quick_mod

    torch.manual_seed(0)
    clf = EvalClassifier()
    save_classifier(clf, {"test": True}, tmp_path / "clf.pt")
    quick = QuickFID(tmp_path / "clf.pt", random_images[:300], n_samples=300, device="cpu")
    featurised: list[int] = []
    real_extract = quick_mod.extract

    def counting_extract(model, images, *args):
        featurised.append(len(images))
        return real_extract(model, images, *args)

    monkeypatch.setattr(quick_mod, "extract", counting_extract)
    g = build_generator("mlp", 100).train()
    t0 = time.perf_counter()
    first = quick(g)
    elapsed = time.perf_counter() - t0
    assert set(first) == {"fid"} and math.isfinite(first["fid"]) and first["fid"] > 0
    assert g.training
    assert featurised == [300]  # cheap: only the generated images go through the classifier
    assert quick(g) == first  # fixed z: only the weights move the curve
    assert elapsed < 30  # ~0.6 s for 300 samples on 2 idle CPU cores (~2 s for 1000); generous for CI
    with torch.no_grad():
        g.model[-2].bias.add_(0.5)
    assert quick(g)["fid"] != first["fid"]


def test_evaluate_generator_and_real_floor(classifier, random_images):
    labels = torch.arange(256) % 10
    ref = compute_stats(classifier, random_images[:128], labels[:128])
    other = compute_stats(classifier, random_images[128:256], labels[128:])
    g = build_generator("mlp", 8)
    spec = EvalSpec(n_samples=60, seed=3, batch_size=64, pr_k=3, kid_subsets=5, kid_subset_size=30)
    out, floor = evaluate_generator(g, classifier, ref, other, spec)
    assert set(METRIC_KEYS) <= set(out)
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert out["n_samples"] == 60 and out["kid_std"] >= 0 and 1 <= out["is_mean"] <= 10
    assert evaluate_generator(g, classifier, ref, other, spec) == (out, floor)
    # The batch size of the generated samples does not move the figures.
    rebatched, _ = evaluate_generator(g, classifier, ref, other,
                                      EvalSpec(**{**spec.__dict__, "batch_size": 7}))
    assert all(rebatched[k] == pytest.approx(out[k], rel=1e-6, abs=1e-9) for k in out)

    assert set(METRIC_KEYS) <= set(floor) and floor["n_samples"] == 60
    # Random images vs random images: same distribution, so far closer than to an untrained generator.
    assert floor["fid"] < out["fid"]
    with pytest.raises(GanModelError, match="disjoint"):
        evaluate_generator(g, classifier, ref, ref, spec)
    with pytest.raises(GanModelError, match="n_samples"):
        evaluate_generator(g, classifier, ref, other, EvalSpec(**{**spec.__dict__, "n_samples": 129}))


def test_a_conditional_generator_is_asked_for_the_floor_sets_labels(classifier, random_images):
    """One protocol for the generator and the floor: a conditional generator is asked for exactly
    the labels of set B, so its class mix is B's, not reference A's."""
    labels = torch.arange(256) % 10
    ref = compute_stats(classifier, random_images[:128], labels[:128])
    other = compute_stats(classifier, random_images[128:256], (labels[128:] * 7) % 10)
    spec = EvalSpec(n_samples=60, seed=3)
    sets = real_sets(ref, other, spec)
    g = build_generator("mlp", 8, n_classes=10)
    sample = generate(g, classifier, sets, spec)
    assert torch.equal(sample.labels, sets.b.labels)
    assert not torch.equal(sets.a.labels, sets.b.labels)
    assert generate(build_generator("mlp", 8), classifier, sets, spec).labels is None


def test_cond_accuracy_is_the_share_of_samples_classified_as_asked():
    logits = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1, 2]]  # predicts 0 1 2 0 1 2
    asked = torch.tensor([0, 1, 2, 1, 1, 0])
    c = Comparison(_features(6, 4, 0), asked, _features(6, 4, 1), logits, seed=0, fake_labels=asked)
    out = METRICS["cond_accuracy"](c)
    assert out["cond_accuracy"] == pytest.approx(4 / 6)
    per_class = (out["cond_accuracy_0"], out["cond_accuracy_1"], out["cond_accuracy_2"])
    assert per_class == (0.5, pytest.approx(2 / 3), 1.0)
    no_labels = Comparison(_features(6, 4, 0), asked, _features(6, 4, 1), logits, seed=0)
    assert METRICS["cond_accuracy"](no_labels) == {}  # an unconditional generator asked for nothing


def test_cas_is_high_for_real_images_chance_for_shuffled_labels_and_seeded(mnist5k):
    from ganmodel.evaluation.cas import classification_accuracy_score

    train, test = mnist5k["train"], mnist5k["test"]
    x, y = train.images[:600], train.labels[:600]
    real = classification_accuracy_score(x, y, test, 10, epochs=6, seed=0)
    assert real > 0.85
    assert classification_accuracy_score(x, y, test, 10, epochs=6, seed=0) == real
    shuffled = y[torch.randperm(600, generator=torch.Generator().manual_seed(0))]
    assert classification_accuracy_score(x, shuffled, test, 10, epochs=6, seed=0) < 0.3
    as_floats = classification_accuracy_score(to_unit(x), y, test, 10, epochs=6, seed=0)
    assert as_floats == pytest.approx(real, abs=1e-9)  # uint8 and [-1, 1] floats are the same images
