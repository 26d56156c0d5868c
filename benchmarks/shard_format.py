"""Which on-disk format the prepared splits use: Parquet (as written by `ganmodel.data.shards`, and
variants) against plain .npy, on a real prepared split tiled up to `--mb` of pixels.

    python benchmarks/shard_format.py --prepared data/prepared [--mb 256]

Prints, per format, the bytes on disk, the write time, and the read throughput (whole split, and
streamed in row groups) side by side. Ray Data reads Parquet directly (`ray.data.read_parquet`,
labels in the same rows as their images); .npy is the no-format baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _binary_column(x: np.ndarray):
    """Images as fixed_size_binary(C*H*W): one FIXED_LEN_BYTE_ARRAY value per image."""
    import pyarrow as pa

    width = int(np.prod(x.shape[1:]))
    buf = pa.py_buffer(np.ascontiguousarray(x))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(x), [None, buf])


def _binary_images(col, shape) -> np.ndarray:
    arr = col.combine_chunks()
    width = int(np.prod(shape))
    buf = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    return buf[arr.offset * width:(arr.offset + len(arr)) * width].reshape(len(arr), *shape)


def _parquet(tmp: Path, x: np.ndarray, y: np.ndarray, binary: bool = False, **kw) -> tuple[float, callable]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ganmodel.data.shards import ROW_GROUP_BYTES, SHARD_BYTES, rows_per

    per_image = int(np.prod(x.shape[1:]))
    per_shard, per_group = rows_per(SHARD_BYTES, per_image), rows_per(ROW_GROUP_BYTES, per_image)
    t0 = time.perf_counter()
    for i, s in enumerate(range(0, len(x), per_shard)):
        part = x[s:s + per_shard]
        col = _binary_column(part) if binary else pa.FixedShapeTensorArray.from_numpy_ndarray(part)
        t = pa.table({"image": col,
                      "label": pa.array(y[s:s + per_shard])})
        pq.write_table(t, tmp / f"part-{i:05d}.parquet", row_group_size=per_group, **kw)
    wrote = time.perf_counter() - t0

    def read() -> int:
        n = 0
        for f in sorted(tmp.glob("*.parquet")):
            pf = pq.ParquetFile(f)
            for g in range(pf.num_row_groups):
                col = pf.read_row_group(g).column("image")
                n += (_binary_images(col, x.shape[1:]) if binary
                      else col.combine_chunks().to_numpy_ndarray()).nbytes
        return n
    return wrote, read


def _npy(tmp: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, callable]:
    from ganmodel.data.shards import SHARD_BYTES, rows_per

    per_shard = rows_per(SHARD_BYTES, int(np.prod(x.shape[1:])))
    t0 = time.perf_counter()
    for i, s in enumerate(range(0, len(x), per_shard)):
        np.save(tmp / f"images-{i:05d}.npy", x[s:s + per_shard])
        np.save(tmp / f"labels-{i:05d}.npy", y[s:s + per_shard])
    wrote = time.perf_counter() - t0

    def read() -> int:
        return sum(np.load(f).nbytes for f in sorted(tmp.glob("images-*.npy")))
    return wrote, read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", required=True, help="a prepared data dir (its train split is tiled)")
    ap.add_argument("--mb", type=int, default=256, help="MB of pixels per format")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from ganmodel.data.prepared import load_split

    split = load_split(args.prepared, "train")
    x0, y0 = split.images.numpy(), split.labels.numpy()
    reps = max(1, (args.mb << 20) // x0.nbytes)
    x, y = np.concatenate([x0] * reps), np.concatenate([y0] * reps)
    print(f"{len(x)} images {list(x.shape[1:])}, {x.nbytes / 2**20:.0f} MB of pixels (train split x{reps})")
    formats = {
        "parquet binary plain": lambda d: _parquet(d, x, y, True, compression="none", use_dictionary=False),
        "parquet binary snappy": lambda d: _parquet(d, x, y, True, compression="snappy",
                                                    use_dictionary=False),
        "parquet binary zstd": lambda d: _parquet(d, x, y, True, compression="zstd", use_dictionary=False),
        "parquet tensor plain": lambda d: _parquet(d, x, y, compression="none", use_dictionary=False),
        "parquet tensor dictionary": lambda d: _parquet(d, x, y, compression="none"),
        "parquet tensor zstd": lambda d: _parquet(d, x, y, compression="zstd", use_dictionary=False),
        "npy": lambda d: _npy(d, x, y),
    }
    print(f"{'format':26s} {'disk MB':>8s} {'write s':>8s} {'read MB/s':>10s}")
    for name, fn in formats.items():
        with tempfile.TemporaryDirectory(prefix="shardfmt-") as tmp:
            d = Path(tmp)
            wrote, read = fn(d)
            disk = sum(f.stat().st_size for f in d.iterdir()) / 2**20
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                n = read()
                times.append(time.perf_counter() - t0)
            print(f"{name:26s} {disk:8.0f} {wrote:8.2f} {n / 2**20 / min(times):10.0f}")


if __name__ == "__main__":
    main()
