"""Prepare's image decoder vs a one-process Pillow loop on the same folder: images/s side by side.

    python benchmarks/prepare.py [FOLDER] [--resolution 32] [--channels 3] [--workers N]
                                 [--limit N] [--max-image-pixels N]

FOLDER defaults to /usr/share/openclipart/png (Debian's openclipart-png) when it is there. Both
sides get the same files (`--limit N`: an evenly spaced sample of N of them, in sorted order) from
a warm page cache, and both leave out files whose header says they are over the pixel limit:

  (a) pillow loop - what one writes by hand: for each file, `Image.open`, `exif_transpose`,
                    `convert("RGB"|"L")`, `ImageOps.fit(..., LANCZOS)` (center crop), in this process;
  (b) prepare     - `ganmodel.data.decode_pool.decode_entries`: prepare's decoder (the same, plus
                    alpha composited onto white, JPEG draft, 16-bit scaling) in a process pool on
                    every core (or `--workers`), files read by the workers.

For each: images, wall seconds, images/s, and CPU seconds (this process and its children): on a
machine shared with other work, wall-clock rates fall with every time slice lost to it, and CPU
seconds show the work itself. The load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

DEFAULT_FOLDER = "/usr/share/openclipart/png"


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def pillow_loop(paths: list[Path], resolution: int, channels: int, max_pixels: int) -> tuple[int, int]:
    """(images made, files left out) by the plain one-process loop."""
    import warnings

    from PIL import Image, ImageOps

    warnings.simplefilter("ignore")  # Pillow's palette and decompression-bomb warnings, per file
    done = failed = 0
    for path in paths:
        try:
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    failed += 1
                    continue
                im = ImageOps.exif_transpose(im).convert("RGB" if channels == 3 else "L")
                ImageOps.fit(im, (resolution, resolution), Image.Resampling.LANCZOS)
                done += 1
        except Exception:  # noqa: BLE001 - a bad file counts as left out, as in prepare's skip mode
            failed += 1
    return done, failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default=DEFAULT_FOLDER)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--channels", type=int, choices=(1, 3), default=3)
    ap.add_argument("--workers", type=int, default=None, help="prepare's processes (default: every core)")
    ap.add_argument("--limit", type=int, default=None, help="an evenly spaced sample of N files")
    ap.add_argument("--max-image-pixels", type=int, default=89_478_485)
    args = ap.parse_args()
    if not Path(args.folder).is_dir():
        raise SystemExit(f"error: {args.folder}: no such folder (apt-get install openclipart-png)")

    from dataclasses import replace

    from ganmodel.data.decode import DecodeOptions
    from ganmodel.data.decode_pool import available_cpus, decode_entries
    from ganmodel.data.imagefiles import list_source

    listing = list_source(args.folder)
    entries = list(listing.entries)
    if args.limit and args.limit < len(entries):
        step = len(entries) / args.limit
        entries = [entries[int(i * step)] for i in range(args.limit)]
        listing = replace(listing, entries=tuple(entries))
    paths = [listing.root / e.member for e in entries]
    for p in paths:  # a warm page cache for both sides
        p.read_bytes()
    print(f"{args.folder}: {len(paths)} files, {args.resolution}x{args.resolution}x{args.channels}, "
          f"{available_cpus()} cores, load average {os.getloadavg()[0]:.1f}")

    cpu, t = _cpu_s(), time.perf_counter()
    done, failed = pillow_loop(paths, args.resolution, args.channels, args.max_image_pixels)
    loop_wall, loop_cpu = time.perf_counter() - t, _cpu_s() - cpu

    opts = DecodeOptions(args.resolution, args.channels, "center-crop", (255, 255, 255),
                         args.max_image_pixels)
    cpu, t = _cpu_s(), time.perf_counter()
    run = decode_entries(listing, opts, workers=args.workers or available_cpus(), log=lambda _m: None)
    ours_wall, ours_cpu = time.perf_counter() - t, _cpu_s() - cpu
    ours_done = sum(o is not None and o.image is not None for o in run.outcomes)

    rows = [("pillow loop (1 process)", done, failed, loop_wall, loop_cpu),
            (f"prepare ({run.processes} processes)", ours_done, len(paths) - ours_done, ours_wall, ours_cpu)]
    print(f"{'':26} {'images':>7} {'left out':>8} {'wall s':>8} {'images/s':>9} {'CPU s':>7} "
          f"{'img/CPU-s':>9}")
    for name, n, bad, wall, cpu_s in rows:
        print(f"{name:26} {n:7d} {bad:8d} {wall:8.1f} {n / wall:9.0f} {cpu_s:7.1f} "
              f"{n / max(cpu_s, 1e-9):9.0f}")
    print(f"prepare / pillow loop: {(ours_done / ours_wall) / (done / loop_wall):.2f}x images/s "
          f"(load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
