"""The folder dataset: class trees (nested, repeated stems), flat folders, zip and tar archives,
bad files under `error` and `skip`, duplicates, small classes, the parallel decoder, and
Fashion-MNIST written out as PNGs decoding to the IDX loader's exact bytes."""

from __future__ import annotations

import gzip
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganmodel.config import DataParams
from ganmodel.data.build import prepare_dataset
from ganmodel.data.folder import load_folder
from ganmodel.data.idx import read_idx, write_idx
from ganmodel.data.imagefiles import list_source
from ganmodel.data.prepared import SPLITS, load_split, read_meta, save_prepared
from ganmodel.data.sources import FASHION_CLASSES, load_raw
from ganmodel.errors import GanModelError

RNG = np.random.default_rng(0)


def params(raw_dir: Path | str, **kw: object) -> DataParams:
    return DataParams(**{"dataset": "folder", "raw_dir": str(raw_dir), "resolution": 16, **kw})


def quiet(_: str) -> None:
    pass


def png(path: Path, value: int | None = None, size: tuple[int, int] = (20, 20)) -> np.ndarray:
    """Write a random (or solid `value`) RGB PNG; return its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.full((size[1], size[0], 3), value, dtype=np.uint8) if value is not None
           else RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    Image.fromarray(arr).save(path)
    return arr


def tree(root: Path, per_class: int = 10) -> Path:
    """Two classes, images at several depths; the same stems repeat in every sub-folder."""
    for c in ("cats", "dogs"):
        for k in range(per_class):
            sub = ("", "indoor", "outdoor/night")[k % 3]
            png(root / c / sub / f"img{k // 3}.png")
    return root


# --- layouts ------------------------------------------------------------------------------------


def test_class_tree_with_nested_folders_and_repeated_stems(tmp_path: Path) -> None:
    root = tree(tmp_path / "pets")
    listing = list_source(str(root))
    assert listing.kind == "folder" and listing.classes == ("cats", "dogs") and listing.labelled
    paths = [e.path for e in listing.entries]
    assert paths == sorted(paths) and len(paths) == 20
    assert {"cats/img0.png", "cats/indoor/img0.png", "cats/outdoor/night/img0.png"} <= set(paths)
    assert [e.label for e in listing.entries] == [0] * 10 + [1] * 10
    data = load_folder(params(root), log=quiet)
    assert data.raw.train_images.shape == (20, 3, 16, 16) and data.labelled
    assert data.report["files"] == {"found": 20, "decoded": 20, "skipped": 0, "duplicates": 0, "ignored": 0,
                                    "duplicates_across_classes": 0, "images": 20}
    # Each file is its own image, in sorted-path order: nothing was keyed (and lost) by stem.
    first = np.asarray(Image.open(root / "cats" / "img0.png").resize((16, 16), Image.Resampling.LANCZOS))
    assert np.abs(data.raw.train_images[0].transpose(1, 2, 0).astype(int) - first).max() <= 1
    assert len({im.tobytes() for im in data.raw.train_images}) == 20


def test_flat_folder_is_one_unlabelled_class(tmp_path: Path) -> None:
    for k in range(12):
        png(tmp_path / "faces" / f"{k}.png")
    (tmp_path / "faces" / "README.txt").write_text("not an image")
    (tmp_path / "faces" / ".DS_Store").write_bytes(b"\0")
    prepared = prepare_dataset(params(tmp_path / "faces", channels=1), log=quiet)
    assert prepared.meta["labelled"] is False and prepared.meta["classes"] == ["faces"]
    assert prepared.meta["image_shape"] == [1, 16, 16] and prepared.meta["channels"] == 1
    assert prepared.meta["source"]["files"]["ignored"] == 2
    assert sum(prepared.meta["splits"].values()) == 12


def test_loose_images_beside_class_folders_is_an_error(tmp_path: Path) -> None:
    tree(tmp_path / "pets")
    png(tmp_path / "pets" / "stray.png")
    with pytest.raises(GanModelError, match=r"^data\.raw_dir: .*top level \(stray\.png, \.\.\.\) beside"):
        list_source(str(tmp_path / "pets"))


@pytest.mark.parametrize(("setup", "match"), [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no image files found"),
    (lambda p: (p.mkdir(), (p / "a.txt").write_text("x")), r"no image files found .*1 other files ignored"),
    (lambda p: p.write_bytes(b"just a file"), "is a file but not a .zip or .tar archive"),
])
def test_unusable_raw_dir(tmp_path: Path, setup, match: str) -> None:
    raw = tmp_path / "raw"
    setup(raw)
    with pytest.raises(GanModelError, match=r"^data\.raw_dir: .*" + match) as exc:
        load_folder(params(raw), log=quiet)
    assert "\n" not in str(exc.value)


# --- archives -----------------------------------------------------------------------------------


def _zip(src: Path, dst: Path, wrap: bool) -> Path:
    with zipfile.ZipFile(dst, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, (f.relative_to(src.parent) if wrap else f.relative_to(src)).as_posix())
    return dst


def _tar(src: Path, dst: Path, mode: str) -> Path:
    with tarfile.open(dst, mode) as tf:
        tf.add(src, arcname=src.name)
    return dst


@pytest.mark.parametrize("archive", ["zip-wrapped", "zip-bare", "tar", "tar.gz"])
def test_archives_read_like_the_folder(tmp_path: Path, archive: str) -> None:
    root = tree(tmp_path / "pets", per_class=8)
    (root / "dogs" / "broken.png").write_bytes(b"")
    folder = prepare_dataset(params(root, on_bad_file="skip"), log=quiet)
    shutil.copytree(root, tmp_path / "copy")  # read back from a copy: the folder is never touched
    src = tmp_path / "copy"
    path = {"zip-wrapped": lambda: _zip(src, tmp_path / "pets.zip", wrap=True),
            "zip-bare": lambda: _zip(src, tmp_path / "pets.zip", wrap=False),
            "tar": lambda: _tar(src, tmp_path / "pets.tar", "w"),
            "tar.gz": lambda: _tar(src, tmp_path / "pets.tar.gz", "w:gz")}[archive]()
    got = prepare_dataset(params(path, on_bad_file="skip"), log=quiet)
    assert got.meta["source"]["kind"] == archive.split("-")[0].split(".")[0]
    assert got.data_hash == folder.data_hash and got.meta["classes"] == ["cats", "dogs"]
    # The content digest covers paths below the unwrapped root and bytes: the same as the folder's.
    assert got.meta["source"]["digest"] == folder.meta["source"]["digest"]
    assert [s["reason"] for s in got.report["skipped_files"]] == ["empty file (0 bytes)"]
    assert got.report["skipped_files"][0]["path"].endswith("dogs/broken.png")


def test_archive_member_climbing_out_is_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(10):
            png(tmp_path / f"{k}.png")
            zf.write(tmp_path / f"{k}.png", f"{k}.png")
        zf.writestr("../../etc/evil.png", (tmp_path / "0.png").read_bytes())
    with pytest.raises(GanModelError, match=r"evil\.zip member \.\./\.\./etc/evil\.png: unsafe member name"):
        load_folder(params(path), log=quiet)
    data = load_folder(params(path, on_bad_file="skip"), log=quiet)
    assert data.report["skipped_files"] == [
        {"path": "../../etc/evil.png", "reason": "unsafe member name (absolute, or climbs out with ..)"}]
    assert not (tmp_path.parent.parent / "etc" / "evil.png").exists()


def test_tar_symlinks_are_ignored(tmp_path: Path) -> None:
    for k in range(10):
        png(tmp_path / "src" / f"{k}.png")
    (tmp_path / "src" / "link.png").symlink_to("0.png")
    path = _tar(tmp_path / "src", tmp_path / "x.tar", "w")
    listing = list_source(str(path))
    assert len(listing.entries) == 10 and listing.ignored == 1


# --- bad files ----------------------------------------------------------------------------------


def _bad(kind: str, path: Path) -> str:
    """Write a bad file of `kind`; return the reason's expected words."""
    if kind == "empty":
        path.write_bytes(b"")
        return "empty file (0 bytes)"
    if kind == "not-image":
        path.write_text("<html>not a png</html>")
        return "not an image"
    if kind == "truncated":
        png(path, size=(40, 40))
        path.write_bytes(path.read_bytes()[:3000])
        return "truncated or corrupt"
    png(path, size=(50, 50))  # "huge": over the limit below
    return "50x50 = 2,500 pixels, over data.max_image_pixels=2,000"


@pytest.mark.parametrize("kind", ["empty", "not-image", "truncated", "huge"])
def test_bad_file_is_an_error_naming_it_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    root = tree(tmp_path / "pets")
    why = _bad(kind, root / "dogs" / "indoor" / "zz.png")
    out = tmp_path / "prepared"
    with pytest.raises(GanModelError) as exc:
        prepare_dataset(params(root, max_image_pixels=2000), log=quiet)
    msg = str(exc.value)
    assert msg.startswith(f"{root / 'dogs' / 'indoor' / 'zz.png'}: ") and why in msg, msg
    assert "data.on_bad_file: skip" in msg and "\n" not in msg
    assert not out.exists()


@pytest.mark.parametrize("kind", ["empty", "not-image", "truncated", "huge"])
def test_bad_file_skipped_and_listed(tmp_path: Path, kind: str) -> None:
    root = tree(tmp_path / "pets")
    why = _bad(kind, root / "cats" / "zz.png")
    got = prepare_dataset(params(root, max_image_pixels=2000, on_bad_file="skip"), log=quiet)
    [skipped] = got.report["skipped_files"]
    assert skipped["path"] == "cats/zz.png" and why in skipped["reason"]
    assert got.meta["source"]["files"] == {"found": 21, "decoded": 20, "skipped": 1, "duplicates": 0,
                                           "ignored": 0}
    assert sum(got.meta["splits"].values()) == 20


def test_first_bad_file_in_sorted_order_is_named(tmp_path: Path) -> None:
    root = tree(tmp_path / "pets")
    (root / "dogs" / "b.png").write_bytes(b"")
    (root / "cats" / "outdoor" / "a.png").write_bytes(b"x")
    for workers in (1, 2):
        with pytest.raises(GanModelError, match=r"cats/outdoor/a\.png: not an image"):
            load_folder(params(root), workers=workers, log=quiet)


# --- duplicates and small classes ---------------------------------------------------------------


def test_duplicates_are_collapsed_so_no_split_shares_an_image(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    for c in ("cats", "dogs"):
        for k in range(20):
            png(root / c / f"{k:02d}.png")
    same = png(root / "cats" / "00.png", value=7)
    for k in (3, 9, 14, 19):  # copies, re-encoded: other bytes, the same pixels
        Image.fromarray(same).save(root / "cats" / f"{k:02d}.png", compress_level=k % 9)
    Image.fromarray(same).save(root / "dogs" / "05.png")  # across classes too
    got = prepare_dataset(params(root), log=quiet)
    files = got.report["files"]
    assert files["duplicates"] == 5 and files["duplicates_across_classes"] == 1 and files["images"] == 35
    assert {d["path"] for d in got.report["duplicate_files"]} == {
        "cats/03.png", "cats/09.png", "cats/14.png", "cats/19.png", "dogs/05.png"}
    assert {d["same_as"] for d in got.report["duplicate_files"]} == {"cats/00.png"}
    seen = [im.numpy().tobytes() for s in SPLITS for im in got.splits[s].images]
    assert len(seen) == len(set(seen)) == 35


def test_small_class_is_an_error_unless_dropped(tmp_path: Path) -> None:
    root = tree(tmp_path / "pets")
    for k in range(3):
        png(root / "birds" / f"{k}.png")
    with pytest.raises(GanModelError, match=r"^data\.raw_dir: class 'birds' has 3 images, too few to split "
                                            r"\(train/val/test 3/0/0 .*set data\.min_class_images: 6"):
        load_folder(params(root), log=quiet)
    got = prepare_dataset(params(root, min_class_images=6), log=quiet)
    assert got.meta["classes"] == ["cats", "dogs"] and got.meta["source"]["dropped_classes"] == ["birds"]
    assert got.report["dropped_classes"] == [{"class": "birds", "images": 3}]
    assert sorted(got.counts["train"]["per_class"]) == ["0", "1"]  # re-indexed
    with pytest.raises(GanModelError, match=r"^data\.min_class_images: every class has fewer than 50"):
        load_folder(params(root, min_class_images=50), log=quiet)


def test_dropping_to_one_class_makes_it_unlabelled(tmp_path: Path) -> None:
    for k in range(10):
        png(tmp_path / "x" / "big" / f"{k}.png")
    png(tmp_path / "x" / "small" / "0.png")
    got = prepare_dataset(params(tmp_path / "x", min_class_images=2), log=quiet)
    assert got.meta["labelled"] is False and got.meta["classes"] == ["big"]


# --- the pool, the prepared files ---------------------------------------------------------------


def test_parallel_decoding_gives_the_same_data(tmp_path: Path) -> None:
    root = tree(tmp_path / "pets", per_class=30)
    lines: list[str] = []
    one = prepare_dataset(params(root), workers=1, log=quiet)
    two = prepare_dataset(params(root), workers=2, log=lines.append)
    assert one.data_hash == two.data_hash and one.meta == two.meta
    assert lines[-1].startswith("prepare: decoded 60/60 images in ") and lines[-1].endswith("2 processes)")


def test_saved_folder_splits_load_with_their_shape(tmp_path: Path) -> None:
    root = tree(tmp_path / "pets")
    got = prepare_dataset(params(root, resolution=32, resize="pad"), log=quiet)
    save_prepared(tmp_path / "prepared", got.splits, got.meta)
    assert read_meta(tmp_path / "prepared")["image_shape"] == [3, 32, 32]
    train = load_split(tmp_path / "prepared", "train")
    assert train.images.shape[1:] == (3, 32, 32) and train.images.dtype == torch.uint8
    meta = read_meta(tmp_path / "prepared")
    assert meta["resize"] == "pad" and meta["background"] == [255, 255, 255]
    save_prepared(tmp_path / "prepared", got.splits, {**meta, "image_shape": [1, 32, 32]})
    with pytest.raises(GanModelError, match=r"are \[3, 32, 32\], but meta\.json says image_shape \[1,"):
        load_split(tmp_path / "prepared", "train")


def test_fashion_mnist_as_pngs_decodes_to_the_idx_bytes(tmp_path: Path) -> None:
    """A few hundred Fashion-MNIST images written out as PNGs (one folder per class) decode, at
    resolution 28 and channels 1, to exactly the bytes the IDX loader reads."""
    installed = Path("/usr/share/datasets/fashion-mnist")
    raw = tmp_path / "idx"
    raw.mkdir()
    if (installed / "t10k-images-idx3-ubyte.gz").is_file():
        images = read_idx(installed / "t10k-images-idx3-ubyte.gz")[:300]
        labels = read_idx(installed / "t10k-labels-idx1-ubyte.gz")[:300]
    else:
        images = RNG.integers(0, 256, (300, 28, 28), dtype=np.uint8)
        labels = np.arange(300, dtype=np.uint8) % 10
    for split in ("train", "t10k"):  # the loader wants all four files
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", labels)
    idx = load_raw("fashion_mnist", str(raw), False)
    folder = tmp_path / "pngs"
    for i, (im, y) in enumerate(zip(idx.train_images, idx.train_labels, strict=True)):
        png_path = folder / f"{y}_{FASHION_CLASSES[y].replace('/', '-')}" / f"{i:05d}.png"
        png_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(png_path)
    data = load_folder(params(folder, resolution=28, channels=1), log=quiet)
    order = np.lexsort((np.arange(len(idx.train_labels)), idx.train_labels))  # class folder, then name
    assert data.raw.train_images.shape == (300, 1, 28, 28)
    np.testing.assert_array_equal(data.raw.train_images[:, 0], idx.train_images[order])
    np.testing.assert_array_equal(data.raw.train_labels, idx.train_labels[order])
    assert gzip.decompress((raw / "train-images-idx3-ubyte.gz").read_bytes())[16:] == images.tobytes()
