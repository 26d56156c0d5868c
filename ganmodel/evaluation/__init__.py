"""Evaluation in the feature space of the pipeline's own feature network (`ganmodel.classifier`).

features: feature-network features/logits of images, seeded generator samples.
distances: FID, KID, IS (torchmetrics on precomputed features).
prdc: precision/recall (k-NN manifolds), density/coverage, nearest neighbours.
coverage: predicted-class histogram, classes covered, KL to the real classes.
realstats: the features of a real split, computed once per process.
sources: real splits in memory or as readers that stream them (`train.data_loading`).
reference: the protocol's real splits featurised, whole in memory or streamed in bounded batches.
metrics: the metric registry (chosen by name) and the generated-vs-real and real-vs-real runs.
protocol: the evaluate stage's protocol (floor, ratios, sample sheets).
ladder: the calibration ladder (held-out images blurred by 1, 2, 4 px) and where a FID stands on it.
quick: the in-training FID.
"""
