"""The image files of a raw source: a folder, or a .zip or .tar (.gz, .bz2, .xz) of one.

Lists them in one deterministic order (sorted relative paths: stems repeat across sub-folders, so
nothing is keyed by stem), assigns classes (the top-level folders, ImageFolder's convention, with
images at any depth below them; a flat folder is one class) and reads their bytes. Archives are
read member by member, never extracted to disk, so a member name cannot write anywhere; names that
are absolute or climb out with `..` are still refused, as bad files.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ganmodel.data.decode import EXTENSIONS, BadImage, DecodeOptions
from ganmodel.errors import GanModelError, brief

ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")


@dataclass(frozen=True)
class Entry:
    """One image file. `path` is relative to the source's root (after unwrapping an archive's single
    top-level folder): it orders entries and names classes. `member` is how to read it and how
    messages name it: the path below raw_dir, or the member's name in the archive."""

    path: str
    member: str
    label: int
    size: int  # bytes (-1: unknown, e.g. a broken link)
    problem: str | None = None  # a bad file known before reading it
    position: int = -1  # a tar member's position in the archive


@dataclass(frozen=True)
class Listing:
    kind: str  # folder | zip | tar
    root: Path  # the folder or archive, absolute
    entries: tuple[Entry, ...]  # sorted by path
    classes: tuple[str, ...]
    ignored: int  # files not considered: other types, hidden files, links in archives, repeated names

    @property
    def labelled(self) -> bool:
        """Several classes: a conditional model can use the labels. One class: unconditional only."""
        return len(self.classes) > 1

    def where(self, entry: Entry) -> str:
        """How a one-line message names the file."""
        if self.kind == "folder":
            return str(self.root / entry.member)
        return f"{self.root} member {entry.member}"


def _hidden(part: str) -> bool:
    # Dot-files (.DS_Store, AppleDouble ._x.png) and macOS zip metadata are never images; `..` in
    # an archive member's name is no hidden file but an unsafe name, reported as a bad file.
    return (part.startswith(".") and part not in (".", "..")) or part == "__MACOSX"


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in EXTENSIONS


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name)
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def _walk_folder(root: Path) -> tuple[list[tuple[str, int]], int]:
    """(relative path, size) of every image-named file below `root`, and the count of the others."""
    files: list[tuple[str, int]] = []
    ignored = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree: walked already
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            if _hidden(name) or not _is_image_name(name):
                ignored += 1
                continue
            try:
                size = os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                size = -1  # a broken link: reading it names the file and the reason
            files.append(((rel / name).as_posix(), size))
    return files, ignored


def _archive_members(root: Path, kind: str) -> tuple[list[tuple[str, int, int]], int]:
    """(member name, size, position) of every image-named regular member, the last of a repeated
    name (what extracting would leave), and the count of the others."""
    found: dict[str, tuple[int, int]] = {}
    ignored = 0
    try:
        if kind == "zip":
            with zipfile.ZipFile(root) as zf:
                infos = [(i.filename, i.file_size, True) for i in zf.infolist() if not i.is_dir()]
        else:
            with tarfile.open(root, "r:*") as tf:
                infos = [(m.name, m.size, m.isreg()) for m in tf.getmembers() if not m.isdir()]
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as err:
        raise GanModelError(f"data.raw_dir: {root}: cannot read the {kind} archive ({brief(err)})") from None
    for pos, (name, size, regular) in enumerate(infos):
        name = name.removeprefix("./")
        parts = PurePosixPath(name).parts
        if not regular or not parts or any(map(_hidden, parts)) or not _is_image_name(name):
            ignored += 1  # links, devices, hidden files, other types
            continue
        if name in found:
            ignored += 1
        found[name] = (size, pos)
    return sorted((m, s, p) for m, (s, p) in found.items()), ignored


def _archive_kind(path: Path) -> str | None:
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        return "tar" if tarfile.is_tarfile(path) else None
    except (OSError, EOFError, tarfile.TarError):
        return None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def list_source(raw_dir: str) -> Listing:
    """List a folder or archive (see the module docstring); a `GanModelError` naming `data.raw_dir`
    when it is missing, not a folder or archive, holds no image files, or mixes loose images with
    class folders."""
    root = Path(raw_dir).expanduser().absolute()
    if not root.exists():
        raise GanModelError(f"data.raw_dir: {raw_dir} does not exist; point it at a folder of images "
                            "(one sub-folder per class, or flat) or a .zip/.tar of one")
    if root.is_dir():
        kind = "folder"
        walked, ignored = _walk_folder(root)
        files = [(m, s, -1) for m, s in walked]
    else:
        found_kind = _archive_kind(root)
        if found_kind is None:
            raise GanModelError(f"data.raw_dir: {raw_dir} is a file but not a .zip or .tar archive")
        kind = found_kind
        files, ignored = _archive_members(root, kind)
    if not files:
        raise GanModelError(f"data.raw_dir: {raw_dir}: no image files found (.png, .jpg, .jpeg, .webp, "
                            f".bmp, .gif){f'; {ignored} other files ignored' if ignored else ''}")
    safe = [f for f in files if not _unsafe(f[0])]
    unsafe = [f for f in files if _unsafe(f[0])]
    name = root.name if kind == "folder" else _stem(root)
    prefix = ""
    if kind != "folder" and safe:
        # An archive of a folder (`zip -r x.zip folder/`) holds everything under one top-level
        # folder: unwrap it, so the archive reads like the folder (its classes, its digest).
        tops = {PurePosixPath(f[0]).parts[0] for f in safe}
        if len(tops) == 1 and all(len(PurePosixPath(f[0]).parts) > 1 for f in safe):
            name = prefix = tops.pop()
    rel = [(m[len(prefix) + 1:] if prefix else m, m, s, pos) for m, s, pos in safe]
    flat = [r[0] for r in rel if "/" not in r[0]]
    if flat and len(flat) < len(rel):
        nested = sorted({r[0].split("/", 1)[0] for r in rel if "/" in r[0]})
        raise GanModelError(
            f"data.raw_dir: {raw_dir} holds images at its top level ({flat[0]}, ...) beside class folders "
            f"({', '.join(nested[:3])}{', ...' if len(nested) > 3 else ''}); move them into a class folder, "
            "or point data.raw_dir at one kind")
    classes = (name,) if flat else tuple(sorted({r[0].split("/", 1)[0] for r in rel}))
    index = {c: i for i, c in enumerate(classes)}
    entries = [Entry(p, m, 0 if flat else index[p.split("/", 1)[0]], s, None, pos) for p, m, s, pos in rel]
    entries += [Entry(m, m, 0, s, "unsafe member name (absolute, or climbs out with ..)", pos)
                for m, s, pos in unsafe]
    return Listing(kind, root, tuple(sorted(entries, key=lambda e: e.path)), classes, ignored)


def _read_limited(f: BinaryIO, opts: DecodeOptions) -> bytes:
    data = f.read(opts.max_file_bytes + 1)
    if len(data) > opts.max_file_bytes:
        raise opts.too_large()
    return data


Read = tuple[Entry, bytes | BadImage]


def read_members(listing: Listing, entries: list[Entry], opts: DecodeOptions) -> Iterator[Read]:
    """The bytes of `entries` of a folder or zip (random access), or why they cannot be read."""
    zf = zipfile.ZipFile(listing.root) if listing.kind == "zip" else None
    try:
        for e in entries:
            try:
                if e.size > opts.max_file_bytes:  # known from the listing: not even opened
                    raise opts.too_large()
                if zf is not None:
                    with zf.open(e.member) as f:
                        yield e, _read_limited(f, opts)
                else:
                    with open(listing.root / e.member, "rb") as f:
                        yield e, _read_limited(f, opts)
            except BadImage as bad:
                yield e, bad
            except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile) as err:
                # RuntimeError: an encrypted zip member; NotImplementedError: an unknown compression.
                yield e, BadImage(f"cannot read the file ({brief(err)})")
    finally:
        if zf is not None:
            zf.close()


def stream_tar(listing: Listing, entries: list[Entry], opts: DecodeOptions,
               wanted: Callable[[int], bool]) -> Iterator[Read]:
    """The bytes of `entries` of a tar, or why they cannot be read, in archive order: one sequential
    pass, so a .tar.gz is decompressed once. `wanted(index in entries)` is asked just before each
    member is read (False: pass over it unread)."""
    by_position = {e.position: i for i, e in enumerate(entries)}
    try:
        with tarfile.open(listing.root, "r|*") as tf:
            for pos, m in enumerate(m for m in tf if not m.isdir()):
                i = by_position.get(pos)
                if i is None or not wanted(i):
                    continue
                try:
                    if m.size > opts.max_file_bytes:
                        raise opts.too_large()
                    f = tf.extractfile(m)
                    yield entries[i], _read_limited(f, opts) if f is not None else b""
                except BadImage as bad:
                    yield entries[i], bad
    except (OSError, EOFError, tarfile.TarError) as err:
        raise GanModelError(f"data.raw_dir: {listing.root}: cannot read the tar archive "
                            f"({brief(err)})") from None
