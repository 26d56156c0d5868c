"""Evaluation in the feature space of the pipeline's own classifier (`ganmodel.classifier`).

features: classifier features/logits of images, seeded generator samples.
distances: FID, KID, IS (torchmetrics on precomputed features).
prdc: precision/recall (k-NN manifolds), density/coverage, nearest neighbours.
coverage: predicted-class histogram, classes covered, KL to the real classes.
realstats: the features of a real split, computed once per process.
metrics: the metric registry (chosen by name) and the generated-vs-real and real-vs-real runs.
protocol: the evaluate stage's protocol (floor, ratios, sample sheets).
quick: the in-training FID.
"""
