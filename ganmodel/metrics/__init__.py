"""Evaluation in the feature space of the pipeline's own classifier (`EvalClassifier`).

features: classifier features/logits of images, seeded generator samples.
distances: FID, KID, IS (torchmetrics on precomputed features).
prdc: precision/recall (k-NN manifolds), density/coverage, nearest neighbours.
coverage: predicted-class histogram, classes covered, KL to the real classes.
stats_cache: real-split features cached by (data, classifier, split, N).
quick: the in-training FID.  evaluate: the full protocol and the real floor.
"""

from ganmodel.metrics.coverage import class_coverage
from ganmodel.metrics.distances import fid_from_features, inception_score, kid_from_features
from ganmodel.metrics.evaluate import METRIC_KEYS, compare_features, evaluate_generator, real_floor
from ganmodel.metrics.features import extract, sample_images
from ganmodel.metrics.prdc import nearest_neighbours, prdc
from ganmodel.metrics.quick import QuickFID
from ganmodel.metrics.stats_cache import (
    RealStats,
    cache_key,
    cached_stats,
    classifier_hash,
    load_stats,
    save_stats,
)

__all__ = [
    "METRIC_KEYS", "QuickFID", "RealStats", "cache_key", "cached_stats", "class_coverage",
    "classifier_hash", "compare_features", "evaluate_generator", "extract", "fid_from_features",
    "inception_score", "kid_from_features", "load_stats", "nearest_neighbours", "prdc", "real_floor",
    "sample_images", "save_stats",
]
