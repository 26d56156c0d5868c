"""Training the evaluation feature networks on the real data: the classifier (`training`), the
label-free rotation network (`selfsup`), and the choice of the one that ships (`choice`).

The networks are in `ganmodel.networks.classifier`, `.selfsup` and `.featurenet`; their
penultimate layers are the feature spaces of every metric in `ganmodel.evaluation`, and their
file format lives in `ganmodel.artifacts`."""
