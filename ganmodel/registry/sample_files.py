"""`ganmodel generate --out-dir`: one PNG per sample, written all or nothing.

Layout: `DIR/00000.png, 00001.png, ...` for an unconditional generator; a conditional one writes a
sub-folder per class, named after the class (`DIR/<class>/00042.png`), so the tree has the layout
the folder dataset reads and can be merged into a training folder for augmentation. The number is
the sample's index in the generated batch (the same seed gives the same files). Greyscale
generators write PNG mode L, colour ones RGB, the pixel values of the sample grid.

The files are written into a fresh directory beside DIR, which replaces DIR only once every file
is there: a failure leaves DIR as it was and no partial directory behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ganmodel.errors import GanModelError

if TYPE_CHECKING:
    import torch

NAME_DIGITS = 5  # up to cli.MAX_SAMPLES (10,000) files sort by name in generation order


def sample_name(index: int) -> str:
    return f"{index:0{NAME_DIGITS}d}.png"


def _safe_component(name: str) -> str:
    """`name` as one path component: separators and NUL become '_'; '' '.' '..' are unusable."""
    out = "".join("_" if ch in "/\\\0" else ch for ch in name).strip()
    return "" if out in ("", ".", "..") else out


def class_folders(classes: Sequence[str] | None, n_classes: int) -> list[str]:
    """The sub-folder of each class index: the class's name where every name makes a distinct path
    component (a folder dataset's names always do), else the class index."""
    names = [_safe_component(str(c)) for c in (classes or [])]
    if len(names) == n_classes and all(names) and len({n.casefold() for n in names}) == n_classes:
        return names
    return [str(i) for i in range(n_classes)]


def check_out_dir(out_dir: str | os.PathLike[str], overwrite: bool) -> Path:
    """The output directory, if it may be written: its parent exists, and it is missing, empty, or
    replaced by choice (`overwrite`); a one-line error naming it otherwise."""
    p = Path(out_dir)
    if not p.parent.is_dir():
        raise GanModelError(f"--out-dir {out_dir}: directory {p.parent} does not exist")
    if p.exists() and not p.is_dir():
        raise GanModelError(f"--out-dir {out_dir}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise GanModelError(f"--out-dir {out_dir}: is not empty; choose a new directory or pass --overwrite "
                            "to replace its content")
    return p


@contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a new empty directory beside `out_dir`; it becomes `out_dir` (replacing it whole) only
    if the block succeeds, and is removed otherwise."""
    from ganmodel.io import replace_path

    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        if out_dir.is_dir():
            replace_path(tmp, out_dir)  # atomic exchange where Linux has it; the old one is removed
        else:
            os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class SampleDir:
    """Writes the samples of one `generate` call into a staged directory (`staged_dir`)."""

    def __init__(self, root: Path, folders: list[str] | None) -> None:
        self.root, self.folders = root, folders

    def write(self, start: int, pixels: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Samples `start, start + 1, ...`: uint8 pixels [B, C, H, W] (`figures.to_pixels`) and, for a
        conditional generator, their class indices [B]."""
        from ganmodel.figures import save_image

        for i in range(pixels.shape[0]):
            sub = self.root
            if labels is not None and self.folders is not None:
                sub = self.root / self.folders[int(labels[i])]
                sub.mkdir(exist_ok=True)  # only the classes asked for get a folder
            save_image(pixels[i], sub / sample_name(start + i))
