"""Training the evaluation classifier (`training`) on the real data.

The network is `ganmodel.networks.classifier`; its penultimate layer is the feature space of every
metric in `ganmodel.evaluation`, and its file format lives in `ganmodel.artifacts`."""
