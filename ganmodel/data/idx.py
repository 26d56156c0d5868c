"""Strict IDX reader (LeCun's MNIST file format), used to validate raw files before torchvision.

torchvision's own reader trusts the header; a truncated download then fails deep inside with an
unhelpful reshape error. This reader checks magic, dtype, dimensions and length first.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ganmodel.errors import GanModelError, brief

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise GanModelError(f"{path}: cannot read IDX file ({brief(err)})") from None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array, validating header and length."""
    p = Path(path)
    buf = _open_bytes(p)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0:
        raise GanModelError(f"{p}: not an IDX file (bad magic number)")
    code, ndim = buf[2], buf[3]
    if code not in _DTYPES or ndim == 0:
        raise GanModelError(f"{p}: not an IDX file (type code {code:#x}, {ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise GanModelError(f"{p}: truncated IDX header")
    shape = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(buf) != expected:
        raise GanModelError(
            f"{p}: truncated or corrupt IDX file: header says shape {shape}, "
            f"expected {expected} bytes, found {len(buf)}"
        )
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzipped when the name ends in .gz). Used by tests and tools."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, arr.ndim])
    data += b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    p = Path(path)
    if p.suffix == ".gz":
        with gzip.open(p, "wb") as f:
            f.write(data)
    else:
        p.write_bytes(data)
