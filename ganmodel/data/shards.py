"""Prepared splits on disk: Parquet shards that Ray Data reads directly, and that this module
reads without Ray, whole or in bounded batches.

    data/prepared/<split>/part-00000.parquet, part-00001.parquet, ...

Each shard has two columns: `image`, one fixed-size binary value of C*H*W bytes per image (the
uint8 [C, H, W] pixels; the shape is in the schema's metadata), and `label`, int64, so labels
travel in the same rows as their images. `ray.data.read_parquet` reads the shards directly
(`ganmodel.training.ray_data`). Why this layout, and zstd, is measured by benchmarks/shard_format.py
(docs/data.md): Arrow's tensor extension stores a list of int32-widened pixels, 4x the bytes and
20x slower to read; fixed-size binary reads as one buffer, zero-copy into numpy.

Shards hold about `SHARD_BYTES` of pixels in row groups of about `ROW_GROUP_BYTES`: a row group is
the unit a reader decodes at once, so it bounds what a streaming reader holds; several shards let
Ray Data spread the reading over tasks and nodes. How the data is sharded changes none of its
bytes, and so not its content hash (`prepared.data_hash`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ganmodel.errors import GanModelError, brief

SHARD_BYTES = 64 << 20
ROW_GROUP_BYTES = 4 << 20
SHARD_GLOB = "part-*.parquet"
IMAGE, LABEL = "image", "label"
SHAPE_KEY = b"ganmodel.image_shape"  # schema metadata: the images' [C, H, W] as JSON
COMPRESSION = "zstd"
CHANNELS = (1, 3)
AGAIN = "run the prepare stage again"


def split_dir(prepared_dir: str | os.PathLike[str], name: str) -> Path:
    return Path(prepared_dir) / name


def rows_per(nbytes: int, image_bytes: int) -> int:
    return max(1, nbytes // max(1, image_bytes))


def write_split(prepared_dir: str | os.PathLike[str], name: str, images: torch.Tensor, labels: torch.Tensor,
                shard_bytes: int = SHARD_BYTES, row_group_bytes: int = ROW_GROUP_BYTES,
                first_shard: int = 0) -> list[Path]:
    """Write uint8 images [N, C, H, W] and int64 labels [N] as `<prepared_dir>/<name>/part-*.parquet`,
    in order, numbering shards from `first_shard` (to append a split written in parts). Returns the
    shard paths."""
    import pyarrow.parquet as pq

    if images.dtype != torch.uint8 or images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError(f"split {name}: expected uint8 [N, C, H, W] images and [N] labels, got "
                         f"{images.dtype} {list(images.shape)} and {list(labels.shape)}")
    out = split_dir(prepared_dir, name)
    out.mkdir(parents=True, exist_ok=True)
    if first_shard == 0:  # a new split replaces the old one: no stale shard is read as extra rows
        for old in out.glob(SHARD_GLOB):
            old.unlink()
    x = np.ascontiguousarray(images.numpy())
    y = labels.numpy().astype(np.int64, copy=False)
    per_image = int(np.prod(x.shape[1:]))
    per_shard, per_group = rows_per(shard_bytes, per_image), rows_per(row_group_bytes, per_image)
    paths = []
    for i, start in enumerate(range(0, max(len(x), 1), per_shard)):
        part = slice(start, start + per_shard)
        path = out / f"part-{first_shard + i:05d}.parquet"
        pq.write_table(to_table(x[part], y[part]), path, row_group_size=per_group, compression=COMPRESSION,
                       use_dictionary=False)
        paths.append(path)
    return paths


def shard_files(prepared_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """The shards of split `name`, in order; a one-line error where there are none."""
    d = split_dir(prepared_dir, name)
    files = sorted(d.glob(SHARD_GLOB)) if d.is_dir() else []
    if not files:
        legacy = Path(prepared_dir) / f"{name}.pt"
        hint = ("it is in the format before streaming (one .pt file per split); run the prepare stage again"
                if legacy.is_file() else "run the prepare stage first")
        raise GanModelError(f"{d}: prepared split not found ({SHARD_GLOB}); {hint}")
    return files


class ShardReader:
    """One split's shards, opened lazily: its length and shape from the Parquet footers alone, and
    its rows whole, in bounded batches, or by index."""

    def __init__(self, prepared_dir: str | os.PathLike[str], name: str,
                 expected_shape: Sequence[int] | None = None) -> None:
        import pyarrow.parquet as pq

        self.name = name
        self.files = shard_files(prepared_dir, name)
        self._pq = pq
        self.shard_rows: list[int] = []
        self.group_rows: list[list[int]] = []
        shape = None
        for f in self.files:
            try:
                md = pq.ParquetFile(f)
            except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
                raise GanModelError(f"{f}: not a prepared shard ({brief(err)})") from None
            s = _check_schema(f, md.schema_arrow)
            if shape is not None and s != shape:
                raise GanModelError(f"{f}: images are {list(s)}, but {self.files[0].name} has {list(shape)}")
            shape = s
            self.shard_rows.append(md.metadata.num_rows)
            self.group_rows.append([md.metadata.row_group(g).num_rows for g in range(md.num_row_groups)])
        assert shape is not None
        if expected_shape is not None and tuple(shape) != tuple(expected_shape):
            raise GanModelError(f"{self.files[0]}: images are {list(shape)}, but meta.json says image_shape "
                                f"{list(expected_shape)}; run the prepare stage again")
        self.image_shape: tuple[int, int, int] = shape
        self.starts = np.cumsum([0, *self.shard_rows])

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of pixels in the split."""
        return len(self) * int(np.prod(self.image_shape))

    def _read_group(self, shard: int, group: int) -> tuple[np.ndarray, np.ndarray]:
        f = self.files[shard]
        try:
            table = self._pq.ParquetFile(f).read_row_group(group)
            return image_array(table.column(IMAGE), self.image_shape), table.column(LABEL).to_numpy()
        except GanModelError:
            raise
        except Exception as err:  # noqa: BLE001
            raise GanModelError(f"{f}: unreadable shard ({brief(err)}); {AGAIN}") from None

    def labels(self) -> torch.Tensor:
        """All labels, int64 [N], reading the label column only (8 bytes an image)."""
        out = []
        for f in self.files:
            try:
                out.append(self._pq.ParquetFile(f).read(columns=[LABEL]).column(LABEL).to_numpy())
            except Exception as err:  # noqa: BLE001
                raise GanModelError(f"{f}: unreadable shard ({brief(err)}); {AGAIN}") from None
        return torch.from_numpy(np.concatenate(out).astype(np.int64))

    def groups(self) -> list[tuple[int, int]]:
        """(shard, row group) of every row group, in stored order."""
        return [(s, g) for s, gs in enumerate(self.group_rows) for g in range(len(gs))]

    def iter_groups(self, order: Sequence[tuple[int, int]] | None = None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(images uint8 [n, C, H, W], labels int64 [n]) of each row group, in `order` (stored order by
        default): at most one row group in memory at a time."""
        for s, g in (order if order is not None else self.groups()):
            yield self._read_group(s, g)

    def iter_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in stored order as (uint8 images [<=batch_size, C, H, W], int64 labels) batches
        of exactly `batch_size` rows (the last may be shorter): holds about one batch and one row group."""
        return rebatch(self.iter_groups(), batch_size)

    def read(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split: images uint8 [N, C, H, W] and labels int64 [N], filled group by group into
        one preallocated tensor (peak memory: the split plus one row group)."""
        images = torch.empty((len(self), *self.image_shape), dtype=torch.uint8)
        labels = torch.empty(len(self), dtype=torch.int64)
        xs, ys = images.numpy(), labels.numpy()  # views: copy the (read-only) Arrow buffers in
        at = 0
        for x, y in self.iter_groups():
            xs[at : at + len(x)] = x
            ys[at : at + len(y)] = y
            at += len(x)
        return images, labels

    def take(self, indices: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows at global `indices` (any order, repeats allowed), reading only their row groups."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"split {self.name}: indices must lie in [0, {len(self) - 1}]")
        images = np.empty((idx.size, *self.image_shape), dtype=np.uint8)
        labels = np.empty(idx.size, dtype=np.int64)
        group_starts = [(s, g, int(self.starts[s]) + sum(self.group_rows[s][:g]), n)
                        for s, gs in enumerate(self.group_rows) for g, n in enumerate(gs)]
        for s, g, start, n in group_starts:
            hit = np.flatnonzero((idx >= start) & (idx < start + n))
            if hit.size:
                x, y = self._read_group(s, g)
                images[hit] = x[idx[hit] - start]
                labels[hit] = y[idx[hit] - start]
        return torch.from_numpy(images), torch.from_numpy(labels)


def rebatch(chunks: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) chunks of any sizes, in order, as batches of exactly `batch_size` rows (the
    last may be shorter). Each buffered run is concatenated once (a copy: the tensors own writable
    memory) and cut into all the full batches it holds; about one batch plus one chunk is held."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0
    for x, y in chunks:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        have += len(x)
        if have >= batch_size:
            bx, by = np.concatenate(xs), np.concatenate(ys)
            full = have // batch_size * batch_size
            for i in range(0, full, batch_size):
                yield torch.from_numpy(bx[i : i + batch_size]), torch.from_numpy(by[i : i + batch_size])
            xs, ys, have = [bx[full:]], [by[full:]], have - full
    if have:
        yield torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def to_table(images: np.ndarray, labels: np.ndarray):
    """A pyarrow Table of uint8 images [n, C, H, W] (zero-copy) and int64 labels [n]."""
    import json

    import pyarrow as pa

    images = np.ascontiguousarray(images)
    width = int(np.prod(images.shape[1:]))
    col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(images), [None, pa.py_buffer(images)])
    schema = pa.schema([(IMAGE, pa.binary(width)), (LABEL, pa.int64())],
                       metadata={SHAPE_KEY: json.dumps(list(images.shape[1:])).encode()})
    return pa.Table.from_arrays([col, pa.array(labels, pa.int64())], schema=schema)


def image_array(column, shape: Sequence[int]) -> np.ndarray:
    """uint8 [n, *shape] over the bytes of a fixed-size binary column (a view, read-only)."""
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = int(np.prod(shape))
    if len(arr) == 0:
        return np.empty((0, *shape), dtype=np.uint8)
    buf = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    return buf[arr.offset * width : (arr.offset + len(arr)) * width].reshape(len(arr), *shape)


def _check_schema(path: Path, schema) -> tuple[int, int, int]:
    """The [C, H, W] of a shard's images; a one-line error if the shard is not ours."""
    import json

    import pyarrow as pa

    names = set(schema.names)
    if IMAGE not in names or LABEL not in names:
        raise GanModelError(f"{path}: expected columns {IMAGE!r} and {LABEL!r}, got {schema.names}")
    try:
        shape = tuple(int(v) for v in json.loads((schema.metadata or {})[SHAPE_KEY]))
    except (KeyError, ValueError, TypeError):
        raise GanModelError(f"{path}: no image shape in the schema metadata; {AGAIN}") from None
    t = schema.field(IMAGE).type
    if (len(shape) != 3 or shape[0] not in CHANNELS or shape[1] != shape[2]
            or t != pa.binary(int(np.prod(shape)))):
        raise GanModelError(f"{path}: expected uint8 images [C, H, W] with C 1 or 3 and H == W, got {t} "
                            f"of shape {list(shape)}")
    if schema.field(LABEL).type != pa.int64():
        raise GanModelError(f"{path}: expected int64 labels, got {schema.field(LABEL).type}")
    return shape  # type: ignore[return-value]
