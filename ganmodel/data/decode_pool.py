"""Decode every file of a listing on every core: a process pool fed in chunks, with a progress line
every few seconds, and (`stop_at_first_bad`) no work past the first bad file in sorted order.

Workers are spawned, not forked: the stage has torch and an MLflow run open by the time it decodes,
and a forked copy of a threaded process can deadlock. They import only this module's dependencies
(numpy, Pillow) and read folder and zip files themselves; tar members are read here, in one
sequential pass, and shipped to them as bytes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from itertools import islice
from multiprocessing import get_context

import numpy as np

from ganmodel.data.decode import BadImage, DecodeOptions, decode_image
from ganmodel.data.imagefiles import Entry, Listing, Read, read_members, stream_tar

PROGRESS_EVERY_S = 10.0
# Below this many files per process a pool's start-up (~0.3 s per process) costs more than it saves.
MIN_FILES_PER_PROCESS = 256


@dataclass(frozen=True)
class Outcome:
    """One file: the sha256 of its bytes ("" if never read), and its image or why it has none."""

    digest: str
    image: np.ndarray | None
    problem: str | None


@dataclass(frozen=True)
class DecodeRun:
    outcomes: list[Outcome | None]  # by entry; None: not decoded (stopped at the first bad file)
    seconds: float
    processes: int

    @property
    def images_per_s(self) -> float:
        done = sum(o is not None for o in self.outcomes)
        return done / self.seconds if self.seconds > 0 else 0.0


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _outcome(read: Read, opts: DecodeOptions) -> Outcome:
    _, data = read
    if isinstance(data, BadImage):
        return Outcome("", None, str(data))
    digest = hashlib.sha256(data).hexdigest()
    try:
        return Outcome(digest, decode_image(data, opts), None)
    except BadImage as bad:
        return Outcome(digest, None, str(bad))


# (index, entry, its bytes or why they could not be read; None: the worker reads the file)
Item = tuple[int, Entry, bytes | BadImage | None]


def decode_chunk(listing: Listing, items: list[Item], opts: DecodeOptions) -> list[tuple[int, Outcome]]:
    """Decode one chunk of items."""
    to_read = [e for _, e, data in items if data is None]
    reads = iter(read_members(listing, to_read, opts))
    out = []
    for i, e, data in items:
        read = next(reads) if data is None else (e, data)
        out.append((i, _outcome(read, opts)))
    return out


class _Progress:
    """`prepare: decoded 4000/8121 images (1350/s)`, at most every PROGRESS_EVERY_S seconds."""

    def __init__(self, total: int, done: int, log: Callable[[str], None]) -> None:
        self.total, self.done, self.log = total, done, log
        self.start = self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S and self.done < self.total:
            self.last = now
            rate = self.done / (now - self.start)
            self.log(f"prepare: decoded {self.done}/{self.total} images ({rate:.0f}/s)")

    def seconds(self) -> float:
        return time.monotonic() - self.start


class _Stop:
    """The lowest index of a bad file so far, when decoding stops there (else never set)."""

    def __init__(self, enabled: bool, n: int) -> None:
        self.enabled, self.first_bad = enabled, n

    def saw(self, i: int, outcome: Outcome) -> None:
        if self.enabled and outcome.problem is not None:
            self.first_bad = min(self.first_bad, i)

    def wanted(self, i: int) -> bool:
        return i < self.first_bad


def _chunks(items: Iterable[Item], size: int, stop: _Stop) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        chunk = [item for item in chunk if stop.wanted(item[0])]
        if chunk:
            yield chunk


def decode_entries(listing: Listing, opts: DecodeOptions, *, workers: int | None = None,
                   stop_at_first_bad: bool = False,
                   log: Callable[[str], None] = print) -> DecodeRun:
    """Decode every entry of `listing` (in `workers` processes; default every available core).
    With `stop_at_first_bad`, files after the first bad one (in sorted order) may be left undone;
    every file before it is decoded, so the first bad file is always found."""
    entries = list(listing.entries)
    n = len(entries)
    outcomes: list[Outcome | None] = [None] * n
    stop = _Stop(stop_at_first_bad, n)
    for i, e in enumerate(entries):
        if e.problem is not None:
            outcomes[i] = Outcome("", None, e.problem)
            stop.saw(i, outcomes[i])
    todo = [i for i in range(n) if outcomes[i] is None]
    if workers is None:
        workers = min(available_cpus(), len(todo) // MIN_FILES_PER_PROCESS)
    processes = max(1, min(workers, len(todo)))
    size = max(1, min(64, len(todo) // (processes * 8)))
    progress = _Progress(n, n - len(todo), log)
    items: Iterable[Item]
    if listing.kind == "tar":
        # Read here in archive order; members after the first bad file are passed over unread.
        tar = [entries[i] for i in todo]
        index = {e.position: i for i, e in zip(todo, tar, strict=True)}
        reads = stream_tar(listing, tar, opts, lambda k: stop.wanted(todo[k]))
        items = ((index[e.position], e, data) for e, data in reads)
    else:
        items = ((i, entries[i], None) for i in todo)
    # What workers need of the listing: its kind and root, not every entry again with each chunk.
    source = replace(listing, entries=())

    def record(results: list[tuple[int, Outcome]]) -> None:
        for i, outcome in results:
            outcomes[i] = outcome
            stop.saw(i, outcome)
        progress.add(len(results))

    if processes == 1:
        for chunk in _chunks(items, size, stop):
            record(decode_chunk(source, chunk, opts))
    else:
        _run_pool(source, opts, _chunks(items, size, stop), processes, stop, record)
    seconds = progress.seconds()
    done = sum(o is not None for o in outcomes)
    log(f"prepare: decoded {done}/{n} images in {seconds:.1f} s ({done / max(seconds, 1e-9):.0f}/s, "
        f"{processes} process{'es' if processes > 1 else ''})")
    return DecodeRun(outcomes, seconds, processes)


def _run_pool(listing: Listing, opts: DecodeOptions, chunks: Iterator[list[Item]], processes: int,
              stop: _Stop, record: Callable[[list[tuple[int, Outcome]]], None]) -> None:
    """Keep a few chunks per process in flight (bounded: tar chunks carry their bytes)."""
    in_flight: dict[Future, int] = {}  # future -> the chunk's lowest index
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        for chunk in chunks:
            while len(in_flight) >= 4 * processes:
                _collect(in_flight, record, stop)
            in_flight[pool.submit(decode_chunk, listing, chunk, opts)] = min(item[0] for item in chunk)
        while in_flight:
            _collect(in_flight, record, stop)


def _collect(in_flight: dict[Future, int], record: Callable[[list[tuple[int, Outcome]]], None],
             stop: _Stop) -> None:
    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
    for f in done:
        del in_flight[f]
        record(f.result())
    for f, first in list(in_flight.items()):
        if not stop.wanted(first) and f.cancel():  # wholly after the first bad file, not started
            del in_flight[f]
