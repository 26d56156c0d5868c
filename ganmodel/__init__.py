"""ganmodel: train GANs with Ray Train, evaluate them, and ship the generator through MLflow."""

__version__ = "0.1.0"
