"""The `folder` dataset: your own images, from a folder or an archive, as raw data to split.

Decodes every image file (`decode_pool`), then decides what enters the dataset:
- bad files (empty, not an image, truncated, over `data.max_image_pixels`): the first one is a
  one-line error (`data.on_bad_file: error`), or each is left out and listed (`skip`);
- exact duplicates, files that decode to the same prepared pixels: only the first by sorted
  relative path is kept, so no image can sit in train and in a held-out split at once (that would
  flatter the real-vs-real floor of every metric);
- classes under `data.min_class_images` are dropped, and a class too small to give every split an
  image is an error naming it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ganmodel.config import DataParams
from ganmodel.data.decode import DecodeOptions
from ganmodel.data.decode_pool import DecodeRun, Outcome, decode_entries
from ganmodel.data.imagefiles import Entry, Listing, list_source
from ganmodel.data.sources import RawData
from ganmodel.data.splits import class_split_sizes
from ganmodel.errors import GanModelError


@dataclass(frozen=True)
class FolderData:
    raw: RawData
    labelled: bool
    source: dict[str, Any]  # meta.json's `source`
    report: dict[str, Any]  # what metrics/prepare.json adds: counts, then every file left out and why


def decode_options(p: DataParams) -> DecodeOptions:
    return DecodeOptions(p.image_resolution, p.image_channels, p.resize, p.background_rgb, p.max_image_pixels)


def source_digest(listing: Listing, outcomes: list[Outcome | None]) -> str:
    """sha256 over every image file's relative path and the sha256 of its bytes, in sorted order:
    the same files give the same digest wherever they are, as a folder or as an archive of it."""
    h = hashlib.sha256()
    for e, o in zip(listing.entries, outcomes, strict=True):
        h.update(f"{e.path}\0{o.digest if o else ''}\n".encode())
    return h.hexdigest()


def _first_bad(listing: Listing, outcomes: list[Outcome | None]) -> str | None:
    for e, o in zip(listing.entries, outcomes, strict=True):
        if o is not None and o.problem is not None:
            return (f"{listing.where(e)}: {o.problem}; set data.on_bad_file: skip to leave bad files out "
                    "(they are listed in metrics/prepare.json)")
    return None


def _collapse_duplicates(kept: list[tuple[Entry, np.ndarray]]) -> tuple[list[tuple[Entry, np.ndarray]],
                                                                         list[dict[str, Any]]]:
    """The first of each set of identical images (entries come sorted by path), and the rest."""
    first: dict[bytes, Entry] = {}
    unique, duplicates = [], []
    for e, image in kept:
        key = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        if key in first:
            same = first[key]
            duplicates.append({"path": e.member, "same_as": same.member,
                               "across_classes": e.label != same.label})
        else:
            first[key] = e
            unique.append((e, image))
    return unique, duplicates


def _min_images_to_split(fractions: list[float]) -> int:
    return next(n for n in range(1, 10_000) if min(class_split_sizes(n, fractions)) > 0)


def _check_class_sizes(counts: dict[str, int], p: DataParams, labelled: bool, raw_dir: str) -> None:
    fractions = [p.val_fraction, p.test_fraction]
    for name, n in counts.items():
        sizes = class_split_sizes(n, fractions)
        if min(sizes) > 0:
            continue
        what = f"class {name!r} has" if labelled else f"{raw_dir} has"
        fix = (f"set data.min_class_images: {_min_images_to_split(fractions)} to drop classes this small"
               if labelled else "add images")
        raise GanModelError(
            f"data.raw_dir: {what} {n} image{'s' if n != 1 else ''}, too few to split (train/val/test "
            f"{'/'.join(map(str, sizes))} at data.val_fraction={p.val_fraction}, data.test_fraction="
            f"{p.test_fraction}); {fix}")


def load_folder(p: DataParams, *, workers: int | None = None,
                log: Callable[[str], None] = print) -> FolderData:
    """Decode `p.raw_dir` into raw data (see the module docstring for what is kept)."""
    listing = list_source(p.raw_dir)
    run: DecodeRun = decode_entries(listing, decode_options(p), workers=workers,
                                    stop_at_first_bad=p.on_bad_file == "error", log=log)
    if p.on_bad_file == "error" and (message := _first_bad(listing, run.outcomes)):
        raise GanModelError(message)
    done = [(e, o) for e, o in zip(listing.entries, run.outcomes, strict=True) if o is not None]
    skipped = [{"path": e.member, "reason": o.problem} for e, o in done if o.problem is not None]
    decoded = [(e, o.image) for e, o in done if o.image is not None]
    if not decoded:
        raise GanModelError(f"data.raw_dir: {p.raw_dir}: none of its {len(listing.entries)} image files "
                            f"could be decoded (first: {skipped[0]['path']}: {skipped[0]['reason']})")
    unique, duplicates = _collapse_duplicates(decoded)

    counts = {c: 0 for c in listing.classes}
    for e, _ in unique:
        counts[listing.classes[e.label]] += 1
    dropped = []
    if p.min_class_images is not None:
        dropped = [{"class": c, "images": n} for c, n in counts.items() if n < p.min_class_images]
        counts = {c: n for c, n in counts.items() if n >= p.min_class_images}
        if not counts:
            largest = max(dropped, key=lambda d: d["images"])
            raise GanModelError(f"data.min_class_images: every class has fewer than {p.min_class_images} "
                                f"images (the largest, {largest['class']!r}, has {largest['images']})")
    labelled = len(counts) > 1
    _check_class_sizes(counts, p, listing.labelled, p.raw_dir)

    classes = tuple(counts)
    relabel = {listing.classes.index(c): i for i, c in enumerate(classes)}
    kept = [(e, image) for e, image in unique if e.label in relabel]
    images = np.stack([image for _, image in kept])
    labels = np.array([relabel[e.label] for e, _ in kept], dtype=np.int64)
    files = {"found": len(listing.entries), "decoded": len(decoded), "skipped": len(skipped),
             "duplicates": len(duplicates), "ignored": listing.ignored}
    source = {"raw_dir": p.raw_dir, "kind": listing.kind, "digest": source_digest(listing, run.outcomes),
              "files": files, "dropped_classes": [d["class"] for d in dropped]}
    report = {
        "files": {**files, "duplicates_across_classes": sum(d["across_classes"] for d in duplicates),
                  "images": len(kept)},
        "classes": {"kept": len(classes), "dropped": len(dropped)},
        "decode": {"seconds": round(run.seconds, 2), "images_per_s": round(run.images_per_s, 1),
                   "processes": run.processes},
        "skipped_files": skipped, "duplicate_files": duplicates, "dropped_classes": dropped,
    }
    return FolderData(RawData(images, labels, None, None, classes), labelled, source, report)
