"""The names params may choose from: network families, losses, augmentations and metrics.

Plain data with no imports, so that validating params.yaml (`ganmodel.config`, run by every
stage) loads none of the code behind the names, and no stage depends on the networks, the losses
or the metrics merely because it validates params. Each registry is tested to hold exactly these
names (tests/test_choices.py): a family, loss, augmentation or metric is added in both places.
"""

# `train.arch`: the families in `ganmodel.networks.GENERATORS`.
ARCHITECTURES = ("conv", "dcgan", "mlp", "mlp_leaky")
# `train.mbstd_group` > 0: the families whose D has a minibatch-stddev layer.
MBSTD_ARCHS = ("conv", "dcgan")
# `train.loss`: `ganmodel.losses.LOSSES`.
LOSSES = ("bce", "hinge", "wgan_gp")
# `train.augment`: the DiffAugment ops of `ganmodel.augment.AUGMENTATIONS`.
AUGMENTATIONS = ("color", "cutout", "translation")
# `evaluate.metrics`: the registry `ganmodel.evaluation.metrics.METRICS` (one comparison of
# features each), and the metrics the evaluate protocol runs itself.
METRICS = ("class_coverage", "cond_accuracy", "fid", "inception_score", "kid", "prdc")
# Run by the evaluate protocol itself: CAS trains a classifier on the generated images;
# data_copying compares distances to the whole train split with held-out ones.
PROTOCOL_METRICS = ("cas", "data_copying")
# The register gate reads fid (for fid_ratio), classes_covered and data_copying.
REQUIRED_METRICS = ("fid", "class_coverage", "data_copying")
