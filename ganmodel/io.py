"""Atomic file outputs and content hashing.

A failed stage leaves its outputs untouched: every output is staged while the stage runs and moved
into place, one atomic replacement per output, only once the whole stage succeeded (`OutputSet`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A fresh unique name, not mkstemp: mkstemp creates the file 0600, and the rename would give
    # every output that mode; a file created by the writer gets the usual umask permissions.
    tmp_path = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Write dict rows (all with the first row's keys) as CSV with a header, atomically; floats
    rounded to 6 decimals as in the JSON metrics."""
    if not rows:
        raise ValueError(f"{path}: no rows to write")
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()} for r in rows)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_path(src: Path, target: Path) -> None:
    """Move `src` over `target` (file or directory) so that `target` never holds a mix of old and
    new: a file by rename(2); a directory by an atomic exchange with the old one (Linux), else by
    renaming the old one aside first (then `target` is briefly missing, never partial)."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(6)}")
        if _exchange(src, target):
            shutil.rmtree(src)  # src now holds the old directory
            return
        os.replace(target, old)
        os.replace(src, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, target)


class OutputSet:
    """Stage outputs, staged while the stage runs and moved into place when it succeeds.

    Used as a context manager. What it guarantees:

    - Nothing reaches a target unless the block succeeds and every declared output was written;
      if the block raises, no target is touched and the staging area is removed.
    - Each output is replaced atomically: a reader sees either its old or its new content, never a
      partly written file or directory (see `replace_path`).
    - Outputs are replaced one after another, so the set is not atomic as a whole: a crash in the
      middle of `commit` can leave some outputs new and the others old (DVC then sees changed
      outputs and re-runs the stage).

    Staged content is first copied beside each target (same filesystem), then renamed.
    """

    def __init__(self) -> None:
        self._staging = Path(tempfile.mkdtemp(prefix="ganmodel-out-"))
        self._targets: dict[Path, Path] = {}

    def path(self, target: str | os.PathLike[str]) -> Path:
        """A staging path whose content will land at `target` on commit."""
        target = Path(target).absolute()
        if target not in self._targets:
            # One folder per target keeps the file name, so a staged file logged as an artifact
            # (e.g. `run.log_artifact(out.path(...))`) is named like its final output.
            slot = self._staging / str(len(self._targets))
            slot.mkdir()
            self._targets[target] = slot / target.name
        return self._targets[target]

    def commit(self) -> None:
        for target, staged in self._targets.items():
            if not staged.exists():
                raise FileNotFoundError(f"stage output {target} was never written")
        siblings: dict[Path, Path] = {}
        try:
            for target, staged in self._targets.items():  # copy everything beside its target first
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.new-{secrets.token_hex(6)}")
                siblings[target] = tmp
                if staged.is_dir():
                    shutil.copytree(staged, tmp)
                else:
                    shutil.copy2(staged, tmp)
            for target, tmp in siblings.items():  # then only renames
                replace_path(tmp, target)
        finally:
            for tmp in siblings.values():
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                elif tmp.exists():
                    tmp.unlink()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_state_dict(state: dict[str, Any]) -> str:
    """Hash of a tensor state dict by key order, names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
