"""Hyper-parameter sweeps over the training loop: Ray Tune trials, each a `train` run."""
