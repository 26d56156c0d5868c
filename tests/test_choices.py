"""The names params are validated against (`ganmodel.choices`) are exactly the registries' keys."""

from __future__ import annotations

from ganmodel import choices, shapes
from ganmodel.augment import AUGMENTATIONS
from ganmodel.evaluation import metrics
from ganmodel.losses import LOSSES
from ganmodel.networks import DISCRIMINATORS, GENERATORS, MBSTD_FAMILIES


def test_architectures_are_the_network_families():
    assert set(choices.ARCHITECTURES) == set(GENERATORS) == set(DISCRIMINATORS) == set(shapes.FAMILY_KIND)
    assert set(choices.MBSTD_ARCHS) == MBSTD_FAMILIES


def test_losses_and_augmentations_are_their_registries():
    assert set(choices.LOSSES) == set(LOSSES)
    assert set(choices.AUGMENTATIONS) == set(AUGMENTATIONS)


def test_metric_names_are_the_metric_registry_and_protocol():
    assert set(choices.METRICS) == set(metrics.METRICS)
    assert choices.PROTOCOL_METRICS == metrics.PROTOCOL_METRICS
    assert choices.REQUIRED_METRICS == metrics.REQUIRED_METRICS
    assert set(metrics.DEFAULT_METRICS) <= {*choices.METRICS, *choices.PROTOCOL_METRICS}


def test_every_name_is_listed_once():
    for names in (choices.ARCHITECTURES, choices.MBSTD_ARCHS, choices.LOSSES, choices.AUGMENTATIONS,
                  choices.METRICS, choices.PROTOCOL_METRICS, choices.REQUIRED_METRICS):
        assert len(set(names)) == len(names)
