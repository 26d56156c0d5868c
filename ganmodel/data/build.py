"""The prepare stage's work, whatever the dataset: raw data -> stratified splits, their content hash,
`meta.json` and what `metrics/prepare.json` reports.

A built-in dataset's meta.json keeps exactly its earlier keys, so its prepared files stay byte for
byte what they were; a folder's adds its shape, whether it is labelled, and its source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ganmodel.config import DataParams
from ganmodel.data.prepared import Split, data_hash, split_counts
from ganmodel.data.sources import load_raw
from ganmodel.data.splits import make_splits


@dataclass(frozen=True)
class PreparedData:
    splits: dict[str, Split]
    meta: dict[str, Any]
    counts: dict[str, dict[str, Any]]  # per split: count and per_class
    report: dict[str, Any] = field(default_factory=dict)  # folder only: files found, skipped, ...

    @property
    def data_hash(self) -> str:
        return str(self.meta["data_hash"])

    @property
    def source(self) -> dict[str, Any] | None:
        """The folder or archive read (meta.json's `source`); None for a built-in dataset."""
        return self.meta.get("source")


def prepare_dataset(p: DataParams, *, workers: int | None = None,
                    log: Callable[[str], None] = print) -> PreparedData:
    """Load (or decode) `p.dataset`, split it and describe it."""
    folder = None
    if p.dataset == "folder":
        from ganmodel.data.folder import load_folder

        folder = load_folder(p, workers=workers, log=log)
        raw = folder.raw
    else:
        raw = load_raw(p.dataset, p.raw_dir, p.download)
    splits = make_splits(raw, p.val_fraction, p.test_fraction, p.seed)
    digest = data_hash(splits)
    counts = split_counts(splits, len(raw.classes))
    meta: dict[str, Any] = {
        "dataset": p.dataset, "data_hash": digest, "classes": list(raw.classes),
        "image_shape": list(splits["train"].images.shape[1:]),
        "splits": {k: v["count"] for k, v in counts.items()},
        "class_counts": {k: v["per_class"] for k, v in counts.items()},
    }
    if folder is None:
        return PreparedData(splits, meta, counts)
    meta.update(resolution=p.image_resolution, channels=p.image_channels, labelled=folder.labelled,
                resize=p.resize, background=list(p.background_rgb)[: p.image_channels],
                source=folder.source)
    return PreparedData(splits, meta, counts, folder.report)
