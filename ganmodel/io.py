"""Atomic file outputs and content hashing.

A stage either leaves all of its outputs or none: every file is written to a temporary
sibling and renamed into place only once the whole stage succeeded.
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


class OutputSet:
    """Stage outputs committed together: files are staged in a temp dir and moved at `commit()`.

    Used as a context manager: if the block raises, nothing is moved and the staging dir is
    removed, so a failed stage leaves no partial outputs.
    """

    def __init__(self) -> None:
        self._staging = Path(tempfile.mkdtemp(prefix="ganmodel-out-"))
        self._targets: dict[Path, Path] = {}

    def path(self, target: str | os.PathLike[str]) -> Path:
        """A staging path whose content will land at `target` on commit."""
        target = Path(target).absolute()
        if target not in self._targets:
            # One folder per target keeps the file name, so a staged file logged as an artifact
            # (e.g. `mlflow.log_artifact(out.path(...))`) is named like its final output.
            slot = self._staging / str(len(self._targets))
            slot.mkdir()
            self._targets[target] = slot / target.name
        return self._targets[target]

    def commit(self) -> None:
        for target, staged in self._targets.items():
            if not staged.exists():
                raise FileNotFoundError(f"stage output {target} was never written")
        for target, staged in self._targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            # Copy then rename so the final step is atomic even across filesystems.
            tmp = target.with_name(f".{target.name}.tmp")
            if staged.is_dir():
                if tmp.exists():
                    shutil.rmtree(tmp)
                shutil.copytree(staged, tmp)
            else:
                shutil.copy2(staged, tmp)
            os.replace(tmp, target)

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
