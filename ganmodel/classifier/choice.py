"""Which feature network the evaluation ships (`classifier.feature_network`), chosen by how
widely each one spreads the calibration ladder (`ganmodel.evaluation.ladder`) on val.

A feature space is useful to the extent that it tells real images from slightly worse ones: the
1-px ratio, FID of val images blurred by 1 px over FID of the val images themselves (both against
an equal train subset), measures that. The rule (`choose`):

- `labelled`, `label_free`, `both`: that network (labelled and both need labelled data);
- `auto`, unlabelled data (one class): `label_free`, the only one there is;
- `auto`, labelled data: `labelled` while its 1-px ratio is at least `classifier.min_blur_ratio`
  (2.0): the rotation network is then not even trained, so the default pipeline's classifier,
  and every figure measured with it, stays what it was (mnist5k: 20.7 at N = 500). Below
  it, the rotation network is trained too, and the network of the largest 1-px ratio among
  `labelled`, `label_free` and `both` ships.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ganmodel.classifier.selfsup import RotationResult, train_rotation_net
from ganmodel.classifier.training import ClassifierResult, train_classifier
from ganmodel.config import ClassifierParams
from ganmodel.data.prepared import Split, to_unit_range
from ganmodel.data.shards import ShardReader
from ganmodel.errors import GanModelError
from ganmodel.evaluation.ladder import blur1_ratio, calibration_ladder
from ganmodel.evaluation.sources import images_at, images_of, n_images
from ganmodel.networks.classifier import EvalClassifier
from ganmodel.networks.featurenet import FeatureStack
from ganmodel.networks.selfsup import RotationNet

LADDER_MAX_N = 1000  # the ladder's N on val: the evaluate protocol's default N, or all of a smaller val
STANDARDISE_MAX_N = 5000  # train images the stack's means and scales are fitted on


@dataclass(frozen=True)
class Choice:
    kind: str  # labelled | label_free | both
    reason: str


def needs_rotation_net(mode: str, labelled: bool, labelled_ratio: float | None,
                       min_blur_ratio: float) -> bool:
    """Whether the rule needs the rotation network trained (see the module docstring)."""
    if mode in ("label_free", "both"):
        return True
    if mode == "labelled":
        return False
    return not labelled or labelled_ratio is None or labelled_ratio < min_blur_ratio


def check_mode(mode: str, labelled: bool) -> None:
    """Refuse a network that needs labels for data without them."""
    if mode in ("labelled", "both") and not labelled:
        raise GanModelError(f"classifier.feature_network: {mode} needs labelled data (a folder of class "
                            "sub-folders); this data has one class: use auto or label_free")


def choose(mode: str, labelled: bool, ratios: dict[str, float], min_blur_ratio: float) -> Choice:
    """The shipped network from the mode and the 1-px ratios of the networks trained (the rule of
    the module docstring; a pure function)."""
    check_mode(mode, labelled)
    if mode != "auto":
        return Choice(mode, f"classifier.feature_network is {mode}")
    if not labelled:
        return Choice("label_free", "unlabelled data: no classes to learn, rotation prediction needs none")
    if ratios["labelled"] >= min_blur_ratio:
        return Choice("labelled", f"the classifier's 1-px blur ratio {ratios['labelled']:.3g} >= "
                                  f"min_blur_ratio {min_blur_ratio:g}")
    best = max(ratios, key=lambda k: ratios[k])
    listed = ", ".join(f"{k} {v:.3g}" for k, v in ratios.items())
    return Choice(best, f"the classifier's 1-px blur ratio {ratios['labelled']:.3g} < min_blur_ratio "
                        f"{min_blur_ratio:g}; the widest ladder of {listed}")


@dataclass
class Selection:
    """The shipped feature network, the rule's choice, and what was trained and measured."""

    model: nn.Module
    choice: Choice
    ladders: dict[str, dict[str, float]]  # per network measured: its ladder on val
    classifier: ClassifierResult | None = None
    rotation: RotationResult | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _ladder(model: nn.Module, train: Split | ShardReader, val: Split | ShardReader,
            seed: int) -> dict[str, float]:
    n = min(LADDER_MAX_N, n_images(val), n_images(train))
    return calibration_ladder(model, images_of(train), images_of(val), n, seed)


def standardised_stack(kind: str, rotation: RotationNet, classifier: EvalClassifier | None,
                       train: Split | ShardReader, seed: int) -> FeatureStack:
    """A `FeatureStack` of `kind` with its means and scales fitted on (up to 5,000) train images."""
    stack = FeatureStack(kind, rotation, classifier)
    n = min(STANDARDISE_MAX_N, n_images(train))
    idx = torch.randperm(n_images(train), generator=torch.Generator().manual_seed(seed))[:n]
    stack.standardise(to_unit_range(images_at(train, idx)))
    return stack.eval()


def select_feature_network(cfg: ClassifierParams, train: Split | ShardReader, val: Split | ShardReader,
                           test: Split | ShardReader, n_classes: int, labelled: bool, log=print) -> Selection:
    """Train what `cfg.feature_network` needs, measure each network's ladder on val and ship by
    `choose`. Labelled data always gets the classifier (its logits give the class figures, and its
    accuracy floor is checked by the stage), whichever features ship. Splits in memory or
    streamed (`ganmodel.classifier.training`): a streamed one is read in batches, or by index for
    the ladder's and the standardisation's subsets."""
    mode = cfg.feature_network
    check_mode(mode, labelled)  # before minutes of training
    ladders: dict[str, dict[str, float]] = {}
    clf = rot = None
    if labelled:
        clf = train_classifier(cfg, train, val, test, n_classes, log)
        ladders["labelled"] = _ladder(clf.model, train, val, cfg.seed)
        log(f"labelled classifier: 1-px blur ratio {blur1_ratio(ladders['labelled']):.3g}")
    labelled_ratio = blur1_ratio(ladders["labelled"]) if clf is not None else None
    nets: dict[str, nn.Module] = {"labelled": clf.model} if clf is not None else {}
    if needs_rotation_net(mode, labelled, labelled_ratio, cfg.min_blur_ratio):
        rot = train_rotation_net(cfg, train, val, test, log)
        clf_model = clf.model if clf is not None else None
        nets["label_free"] = standardised_stack("label_free", rot.model, clf_model, train, cfg.seed)
        if clf_model is not None:
            nets["both"] = standardised_stack("both", rot.model, clf_model, train, cfg.seed)
        for kind in [k for k in nets if k not in ladders]:
            ladders[kind] = _ladder(nets[kind], train, val, cfg.seed)
            log(f"{kind} features: 1-px blur ratio {blur1_ratio(ladders[kind]):.3g}")
    choice = choose(mode, labelled, {k: blur1_ratio(v) for k, v in ladders.items()}, cfg.min_blur_ratio)
    history = (clf.history if clf is not None else []) + (rot.history if rot is not None else [])
    return Selection(nets[choice.kind].eval(), choice, ladders, clf, rot, history)
