"""Feature networks at any image shape, the label-free rotation network, the calibration ladder,
the rule that chooses the shipped network, evaluation without classes and the gate's class rule.

Quick lane: small mnist5k subsets, a few seeded epochs, no Ray/MLflow/DVC."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganmodel.artifacts import load_classifier, read_model_file, save_classifier, save_model_file
from ganmodel.classifier.choice import check_mode, choose, needs_rotation_net
from ganmodel.classifier.selfsup import rotation_accuracy, train_rotation_net
from ganmodel.classifier.training import train_classifier
from ganmodel.config import (
    ClassifierParams,
    EvaluateParams,
    RegisterParams,
    min_classifier_accuracy,
    parse_params,
)
from ganmodel.data.prepared import Split
from ganmodel.errors import GanModelError
from ganmodel.evaluation.ladder import calibration_ladder, ladder_position
from ganmodel.evaluation.oracles import RealImages
from ganmodel.evaluation.protocol import evaluate
from ganmodel.networks import check_shape
from ganmodel.networks.classifier import EvalClassifier, stage_plan
from ganmodel.networks.featurenet import FeatureStack
from ganmodel.networks.selfsup import RotationNet, rotations
from ganmodel.registry.gate import CHAMPION, check_metrics, decide, required_classes, thresholds


class FrozenEvalClassifier(nn.Module):
    """The evaluation classifier as it was before it took an image shape (commit cbb6c06), frozen
    here: at (1, 28, 28) today's must build the very same weights."""

    def __init__(self, feature_dim: int = 128, n_classes: int = 10) -> None:
        super().__init__()
        self.feature_dim, self.n_classes = feature_dim, n_classes
        w = 16

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, w), *block(w, w), nn.MaxPool2d(2),
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(2 * w * 7 * 7, feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, (1, 28, 28), "frozen classifier input")
        return self.head(self.body(x))


def test_the_classifier_at_28_is_the_original_net_weight_for_weight():
    torch.manual_seed(3)
    old = FrozenEvalClassifier(128, 10)
    torch.manual_seed(3)
    new = EvalClassifier(128, 10, (1, 28, 28))
    a, b = old.state_dict(), new.state_dict()
    assert list(a) == list(b)  # names and creation order
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded init
    assert str(old.body) == str(new.body) and str(old.head) == str(new.head)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    old.eval(), new.eval()
    assert torch.equal(old(x), new(x))


@pytest.mark.parametrize(("shape", "stages"), [((1, 16, 16), 1), ((3, 28, 28), 2), ((3, 32, 32), 2),
                                               ((3, 64, 64), 3), ((1, 100, 100), 4), ((3, 256, 256), 5)])
def test_the_classifier_takes_any_shape_with_a_small_final_map(shape, stages):
    assert len(stage_plan(shape[-1])) == stages
    net = EvalClassifier(32, 5, shape).eval()
    flat = net.body[-2].in_features
    assert flat <= 64 * 8 * 8
    x = torch.rand(2, *shape) * 2 - 1
    f, logits = net.features_and_logits(x)
    assert f.shape == (2, 32) and logits.shape == (2, 5)
    with pytest.raises(ValueError, match="expected shape"):
        net(torch.zeros(2, 1, 20, 20))


def test_rotations_are_exact_and_labelled():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    r, y = rotations(x)
    assert r.shape == (8, 1, 3, 3) and y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(r[:2], x) and torch.equal(r[4:6], x.flip(2, 3))  # 180 degrees


def _subset(split: Split, n: int) -> Split:
    return Split(split.images[:n], split.labels[:n])


@pytest.fixture(scope="module")
def small(mnist5k) -> dict[str, Split]:
    return {"train": _subset(mnist5k["train"], 1000), "val": _subset(mnist5k["val"], 300),
            "test": _subset(mnist5k["test"], 300)}


@pytest.fixture(scope="module")
def rotation_result(small):
    torch.manual_seed(0)
    cfg = ClassifierParams(selfsup_epochs=2, feature_dim=64, seed=0)
    return train_rotation_net(cfg, small["train"], small["val"], small["test"], log=lambda _m: None)


def test_the_rotation_net_learns_to_tell_rotations(rotation_result, small):
    # Chance is 0.25 (and 0, 1, 8 look alike upside down); two short epochs on 1,000 digits
    # already tell about 0.6 of the rotations apart.
    assert rotation_result.test_accuracy > 0.45, rotation_result.test_accuracy
    assert rotation_result.confusion.shape == (4, 4) and int(rotation_result.confusion.sum()) == 4 * 300
    val = rotation_accuracy(rotation_result.model, small["val"].images)
    assert val == pytest.approx(rotation_result.val_accuracy)
    assert rotation_result.model.n_classes == 0


@pytest.fixture(scope="module")
def quick_classifier(small):
    cfg = ClassifierParams(epochs=2, feature_dim=64, seed=0)
    return train_classifier(cfg, small["train"], small["val"], small["test"], 10, log=lambda _m: None)


def test_the_ladder_is_monotone_in_either_feature_space(quick_classifier, rotation_result, small):
    for model in (quick_classifier.model, rotation_result.model):
        ladder = calibration_ladder(model, small["train"].images, small["val"].images, n=300, seed=0)
        rungs = [ladder[k] for k in ("ladder_real", "ladder_blur1", "ladder_blur2", "ladder_blur4")]
        assert rungs == sorted(rungs) and len(set(rungs)) == 4, ladder
        assert ladder["ladder_blur1_ratio"] == pytest.approx(ladder["ladder_blur1"] / ladder["ladder_real"])
        assert ladder["ladder_blur1_ratio"] > 1.5  # a 1-px blur is far from real in both
    assert ladder_position(rungs[0] * 0.9, ladder) == "at the real floor"
    assert ladder_position((rungs[1] + rungs[2]) / 2, ladder) == "between blur1 and blur2"
    assert ladder_position(rungs[3] * 2, ladder) == "worse than blur4"


def test_the_stack_standardises_each_network_and_keeps_class_logits(quick_classifier, rotation_result, small,
                                                                    tmp_path):
    both = FeatureStack("both", rotation_result.model, quick_classifier.model)
    x = (small["train"].images[:400].float() / 127.5) - 1
    both.standardise(x)
    with torch.no_grad():
        f, logits = both.eval().features_and_logits(x)
    assert f.shape == (400, 128) and logits.shape == (400, 10)
    for part in (f[:, :64], f[:, 64:]):  # each network: mean 0, mean variance 1 on what it was fitted on
        assert part.mean(0).abs().max() < 1e-4 and float(part.var(0).mean()) == pytest.approx(1, rel=1e-3)
    assert torch.equal(logits, quick_classifier.model.eval()(x))
    save_classifier(both, {"classes": list("0123456789")}, tmp_path / "both.pt")
    loaded, meta = load_classifier(tmp_path / "both.pt")
    assert meta["feature_network"] == "both" and meta["image_shape"] == [1, 28, 28]
    assert torch.equal(loaded.features_and_logits(x)[0], f)


def test_feature_network_files_record_their_shape_and_old_files_load_as_28(tmp_path):
    torch.manual_seed(0)
    colour = EvalClassifier(16, 3, (3, 32, 32)).eval()
    save_classifier(colour, {"classes": ["a", "b", "c"]}, tmp_path / "c.pt")
    loaded, meta = load_classifier(tmp_path / "c.pt")
    assert loaded.image_shape == (3, 32, 32) and meta["feature_network"] == "labelled"
    assert torch.load(tmp_path / "c.pt", weights_only=True)["meta"]["image_shape"] == [3, 32, 32]
    # A file from before: no kind, no shape.
    old = EvalClassifier(16, 10)
    save_model_file(tmp_path / "old.pt", "classifier", old.state_dict(), {"feature_dim": 16, "n_classes": 10})
    loaded, _ = load_classifier(tmp_path / "old.pt")
    assert isinstance(loaded, EvalClassifier) and loaded.image_shape == (1, 28, 28)
    unlabelled = FeatureStack("label_free", RotationNet(16, (3, 32, 32)))
    save_classifier(unlabelled, {"classes": ["all"]}, tmp_path / "u.pt")
    loaded, meta = load_classifier(tmp_path / "u.pt")
    assert loaded.n_classes == 0 and read_model_file(tmp_path / "u.pt", "classifier")[1]["n_classes"] == 0


# ---- the choice rule ----------------------------------------------------------------------------

def test_auto_keeps_the_classifier_while_its_ladder_spreads_and_skips_the_rotation_net():
    assert not needs_rotation_net("auto", True, 50.0, 2.0)
    c = choose("auto", True, {"labelled": 50.0}, 2.0)
    assert c.kind == "labelled" and "50 >= min_blur_ratio 2" in c.reason


def test_auto_ships_the_widest_ladder_when_the_classifier_spreads_too_little():
    assert needs_rotation_net("auto", True, 1.4, 2.0)
    assert choose("auto", True, {"labelled": 1.4, "label_free": 3.0, "both": 2.5}, 2.0).kind == "label_free"
    assert choose("auto", True, {"labelled": 1.4, "label_free": 1.2, "both": 1.9}, 2.0).kind == "both"
    assert choose("auto", True, {"labelled": 1.4, "label_free": 1.1, "both": 1.3}, 2.0).kind == "labelled"


def test_unlabelled_data_gets_the_label_free_network_and_refuses_the_others():
    assert needs_rotation_net("auto", False, None, 2.0)
    assert choose("auto", False, {"label_free": 1.1}, 2.0).kind == "label_free"
    for mode in ("labelled", "both"):
        with pytest.raises(GanModelError, match="needs labelled data"):
            check_mode(mode, False)
    assert choose("both", True, {"labelled": 50.0, "label_free": 3.0, "both": 9.0}, 2.0).kind == "both"
    assert needs_rotation_net("label_free", True, 50.0, 2.0)
    assert not needs_rotation_net("labelled", True, 1.0, 2.0)


def test_accuracy_floor_of_a_folder_is_relative_to_chance():
    folder = parse_params({"data": {"dataset": "folder", "resolution": 32}})
    assert min_classifier_accuracy(folder, 2) == 0.75
    assert min_classifier_accuracy(folder, 10) == pytest.approx(0.2)
    assert min_classifier_accuracy(folder, 22) < 0.45  # openclipart's 22 weak labels: ~0.45 passes
    assert min_classifier_accuracy(parse_params({}), 10) == 0.97
    assert min_classifier_accuracy(parse_params({"data": {"dataset": "fashion_mnist"}}), 10) == 0.90


# ---- evaluation without classes -----------------------------------------------------------------

def _unlabelled(split: Split) -> Split:
    return Split(split.images, torch.zeros_like(split.labels))


def test_unlabelled_evaluation_skips_the_class_metrics_and_says_why(rotation_result, mnist5k):
    net = FeatureStack("label_free", rotation_result.model)
    train, held = _unlabelled(_subset(mnist5k["train"], 600)), _unlabelled(mnist5k["val"])
    cfg = EvaluateParams(n_samples=200, kid_subsets=5, kid_subset_size=100, grid_size=4, nn_rows=2)
    res = evaluate(RealImages(mnist5k["test"].images), net, train, held, cfg, ["all"])
    m = res.metrics
    for name in ("inception_score", "class_coverage", "cond_accuracy", "cas"):
        assert "unlabelled data" in res.skipped[name]
    assert not any(k.startswith(("class", "is_", "cond_accuracy", "cas")) for k in m), sorted(m)
    assert res.histogram == []
    assert 0.5 < m["fid_ratio"] < 2 and m["ladder_real"] == m["fid_floor"]
    assert m["ladder_blur1"] > m["fid"]
    assert res.ladder_position in ("at the real floor", "between real and blur1")
    assert "fid" in m and "precision" in m and "data_copying" in m


def test_an_unconditional_generator_on_labelled_data_skips_only_the_asked_for_class_metrics(quick_classifier,
                                                                                             mnist5k):
    cfg = EvaluateParams(n_samples=200, kid_subsets=5, kid_subset_size=100, grid_size=4, nn_rows=2)
    res = evaluate(RealImages(mnist5k["test"].images), quick_classifier.model, _subset(mnist5k["train"], 600),
                   mnist5k["val"], cfg, [str(c) for c in range(10)])
    assert set(res.skipped) == {"cond_accuracy", "cas"} and "unconditional" in res.skipped["cas"]
    assert "classes_covered" in res.metrics and "is_mean" in res.metrics and len(res.histogram) == 10
    # Each class's row has the real floor's share too: the rule applied to it gives the floor's count.
    covered = sum(r["real_classified"] >= 0.2 * r["real"] and r["real"] > 0 for r in res.histogram)
    assert covered == res.metrics["classes_covered_floor"]


# ---- the gate's class rule ----------------------------------------------------------------------

PROTOCOL = {"data_hash": "d" * 64, "classifier_hash": "c" * 64, "eval_code_hash": "e" * 64,
            "conditional": False, "generator_hash": "a" * 64, "n_samples": 1000, "eval_seed": 1234}


def test_the_gate_skips_the_class_rule_for_unlabelled_data_and_says_so():
    m = {"fid": 3.0, "fid_ratio": 1.2, "data_copying": 0.1, **PROTOCOL, "n_classes": 0,
         "skipped": {"class_coverage": "unlabelled data: the feature network has no class head"}}
    check_metrics(m)  # classes_covered may be missing: there are no classes
    cfg = RegisterParams()
    assert required_classes(m, cfg) is None
    d = decide(m, cfg, champion=None)
    assert d.decision == CHAMPION and "class rule skipped: unlabelled data" in d.reason
    assert "class rule skipped" in thresholds(cfg, m)
    with pytest.raises(GanModelError, match="classes_covered"):
        check_metrics({k: v for k, v in m.items() if k != "skipped"})  # labelled: it must be there


def test_the_class_rule_needs_every_class_of_data_with_fewer_classes():
    cfg = RegisterParams(min_classes_covered=10)
    few = {"fid": 3.0, "fid_ratio": 1.2, "data_copying": 0.1, **PROTOCOL, "n_classes": 4,
           "classes_covered": 4.0}
    assert required_classes(few, cfg) == 4 and decide(few, cfg, None).decision == CHAMPION
    d = decide({**few, "classes_covered": 3.0}, cfg, None)
    assert "classes_covered 3 < 4 required (every class the data has; min_classes_covered 10)" in d.reason
    many = {**few, "n_classes": 22, "classes_covered": 17.0}
    assert required_classes(many, RegisterParams(min_classes_covered=18)) == 18
    assert required_classes({k: v for k, v in few.items() if k != "n_classes"}, cfg) == 10  # older files
