"""The `ganmodel` command.

    ganmodel generate --model MODEL -n 64 --seed 0 [--out grid.png|samples.npy] [--out-dir DIR
                      [--overwrite]] [--tracking-uri URI] [--label 7 | --labels 0,1,2]
    ganmodel sweep [--params params.yaml] [--prepared data/prepared] [--classifier models/classifier.pt]
                   [--resume] [--apply]

MODEL is a registry URI (`models:/<name>@<alias>`, `models:/<name>/<version>`, `models:/m-<id>`),
a run artifact (`runs:/<run_id>/<path>`: the pyfunc model directory or a generator file), or a
local generator file written by the train stage. `--out x.png` writes a sample grid (greyscale or
RGB), `--out x.npy` a float32 array [N, C, H, W] in [-1, 1], (C, H, W) being the model's image
shape (its file's `image_shape`: 1x28x28 for MNIST, e.g. 3x64x64 for colour images of a folder).
`--out-dir DIR` writes one PNG per sample, a sub-folder per class for a conditional model (the
folder dataset's layout; see `ganmodel.registry.sample_files`): the data-augmentation output.
Both may be given; every output is written all or nothing. The latent vectors are drawn from
`torch.Generator` seeded with --seed, so a seed always gives the same images for the same weights.

A conditional generator makes the classes it is asked for: `--label 7` (every image a 7) or
`--labels 0,1,2` (equal runs of each, one grid row per class); without either, all its classes,
one row each. An unconditional generator refuses labels.

`ganmodel sweep` runs params.yaml's `sweep` section (see `ganmodel.sweep.runner`).

Registry URIs only download the generator weights (`artifacts/generator.pt` of the logged model)
and rebuild the network; they never unpickle the pyfunc wrapper. Heavy modules (torch, mlflow)
are imported only when a command needs them, so `ganmodel --help` stays fast.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

from ganmodel.entry import run_main
from ganmodel.errors import GanModelError

MAX_SAMPLES = 10_000
# Images per forward pass: all of MNIST's 10,000 in one (the numbers of a single batch, as always),
# a few dozen at 256 px colour, so memory stays bounded whatever the model's size.
BATCH_VALUES = 2**23
OUTPUT_SUFFIXES = (".png", ".npy")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))?/?$")


def _positive_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= n <= MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_SAMPLES}, got {n}")
    return n


def _label(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a class index, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a class index >= 0, got {n}")
    return n


def _label_list(text: str) -> list[int]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected class indices separated by commas, got {text!r}")
    return [_label(t) for t in items]


def _seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= n < 2**63:
        raise argparse.ArgumentTypeError(f"expected 0 <= seed < 2**63, got {n}")
    return n


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one `error:` line and exit 2 (like every other error)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="ganmodel", description="Use the GAN generators trained by the ganmodel pipeline.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    g = sub.add_parser("generate", help="sample images from a generator",
                       description="Sample images from a registered, logged or local generator.")
    g.add_argument("--model", required=True,
                   help="models:/<name>@<alias> | models:/<name>/<version> | runs:/<run_id>/<path> | "
                        "path/to/generator.pt")
    g.add_argument("-n", "--num", type=_positive_count, default=64,
                   help=f"images to generate (1-{MAX_SAMPLES})")
    g.add_argument("--seed", type=_seed, default=0, help="seed of the latent vectors")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--label", type=_label, default=None, help="a conditional model's class, e.g. 7")
    which.add_argument("--labels", type=_label_list, default=None,
                       help="a conditional model's classes, e.g. 0,1,2 (one grid row each)")
    g.add_argument("--out", default=None,
                   help="output file: .png (a grid) or .npy (float32 [N, C, H, W] in [-1, 1], the model's "
                        "image shape)")
    g.add_argument("--out-dir", default=None,
                   help="output directory: one PNG per sample (00000.png, ...), in a sub-folder per class "
                        "for a conditional model; must be new or empty unless --overwrite")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty --out-dir")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db)")
    s = sub.add_parser(
        "sweep", help="search train params with Ray Tune (params.yaml's sweep section)",
        description="Run the hyper-parameter sweep of params.yaml's `sweep` section: Ray Tune trials of the "
                    "training loop, ASHA early stopping, one MLflow child run per trial; writes "
                    "sweeps/<name>/ (results.csv, results.png, best.yaml) and prints the "
                    "`dvc exp run -S ...` line that applies the best trial.")
    s.add_argument("--params", default="params.yaml")
    s.add_argument("--prepared", default="data/prepared", help="prepared splits directory")
    s.add_argument("--classifier", default="models/classifier.pt", help="classifier weights (the quick FID)")
    s.add_argument("--resume", action="store_true",
                   help="continue the interrupted sweep of this sweep.name (finished trials are not re-run)")
    s.add_argument("--apply", action="store_true",
                   help="queue the best trial's params as a DVC experiment (dvc exp run --queue)")
    return ap


# ---------------------------------------------------------------------------------------------
# Resolving a model reference to a local generator file


def _local_store_check(uri: str) -> None:
    """A missing sqlite store would be created empty (and slowly): say so instead."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise GanModelError(f"no MLflow store at {db} (tracking URI {uri}); run the pipeline first or "
                                "set --tracking-uri / MLFLOW_TRACKING_URI")


def _tracking(tracking_uri: str | None) -> str:
    from ganmodel.tracking.store import configure_tracking, default_tracking_uri

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stderr for errors
    # Checked before configure_tracking, which creates the store's directory.
    _local_store_check(os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri("."))
    return configure_tracking(".")


def resolve_generator_file(ref: str, tracking_uri: str | None, workdir: str | os.PathLike[str]) -> Path:
    """A local `save_generator` file for `ref` (downloaded into `workdir` if remote)."""
    if not ref.startswith(("models:/", "runs:/")):
        p = Path(ref)
        if not p.is_file():
            raise GanModelError(f"{ref}: no such generator file (or use models:/<name>@<alias>, runs:/...)")
        return p

    uri = _tracking(tracking_uri)
    from ganmodel.tracking.models import fetch_generator_file

    m = _MODELS_URI.match(ref) if ref.startswith("models:/") else None
    if ref.startswith("models:/") and m is None:
        raise GanModelError(f"{ref}: expected models:/<name>@<alias> or models:/<name>/<version>")
    return fetch_generator_file(ref, m["name"] if m else None, m["alias"] if m else None,
                                m["version"] if m else None, workdir, uri)


# ---------------------------------------------------------------------------------------------


def sample_labels(n: int, n_classes: int, classes: list[int] | None,
                  what: str) -> tuple[list[int] | None, int]:
    """The classes to ask a generator of `n_classes` for (None: unconditional) and the grid's
    columns; `classes` as given on the command line (`what` names the flag), else every class."""
    if n_classes == 0:
        if classes is not None:
            raise GanModelError(f"{what}: this generator is unconditional; it takes no labels")
        return None, max(1, int(math.ceil(math.sqrt(n))))
    classes = list(range(n_classes)) if classes is None else classes
    if bad := [c for c in classes if c >= n_classes]:
        raise GanModelError(f"{what}: {bad[0]} is not a class of this generator (0-{n_classes - 1})")
    return classes, -(-n // len(classes))


def _check_out(out: str) -> Path:
    out_path = Path(out)
    suffix = out_path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise GanModelError(f"--out {out}: unknown output extension {suffix or '(none)'!r}; "
                            f"expected one of {', '.join(OUTPUT_SUFFIXES)}")
    if not out_path.parent.is_dir():
        raise GanModelError(f"--out {out}: directory {out_path.parent} does not exist")
    if out_path.is_dir():
        raise GanModelError(f"--out {out}: is a directory; expected a file name")
    return out_path


def _check_grid(out: str, n: int, shape: tuple[int, ...], cols: int) -> None:
    """A grid Pillow would refuse to open (or warn about) is an error before anything is drawn."""
    from PIL import Image

    from ganmodel.figures import grid_size

    w, h = grid_size(n, (int(shape[-2]), int(shape[-1])), cols)
    if w * h > Image.MAX_IMAGE_PIXELS:
        raise GanModelError(f"--out {out}: a grid of {n} images of {shape[-2]}x{shape[-1]} px would be "
                            f"{w}x{h} px, over Pillow's decompression-bomb limit ({Image.MAX_IMAGE_PIXELS:,} "
                            "px) that readers refuse or warn about; use fewer images, .npy or --out-dir")


def generate(model: str, n: int, seed: int, out: str | None = None, tracking_uri: str | None = None,
             classes: list[int] | None = None, what: str = "--labels", out_dir: str | None = None,
             overwrite: bool = False) -> list[Path]:
    """Write `n` samples of `model` to `out` (.png grid or .npy array [N, C, H, W]) and/or `out_dir`
    (a PNG per sample, `sample_files`); returns the paths written. A conditional model makes
    `classes` (default: all) in equal runs, one grid row (and one sub-folder) per class."""
    if out is None and out_dir is None:
        raise GanModelError("generate: give --out FILE (.png or .npy), --out-dir DIR, or both")
    out_path = _check_out(out) if out is not None else None
    from ganmodel.registry import sample_files

    dir_path = sample_files.check_out_dir(out_dir, overwrite) if out_dir is not None else None

    import tempfile
    from contextlib import ExitStack

    import numpy as np
    import torch

    from ganmodel.artifacts import load_generator
    from ganmodel.figures import save_grid, to_pixels
    from ganmodel.io import atomic_path
    from ganmodel.networks import class_rows

    with tempfile.TemporaryDirectory(prefix="ganmodel-generate-") as tmp:
        g, meta = load_generator(resolve_generator_file(model, tracking_uri, tmp))
    n_classes = int(getattr(g, "n_classes", 0))
    asked, cols = sample_labels(n, n_classes, classes, what)
    # The file's meta says what the weights make; files from before colour lack it: MNIST's shape.
    shape = tuple(meta.get("image_shape") or getattr(g, "image_shape", (1, 28, 28)))
    is_png = out_path is not None and out_path.suffix.lower() == ".png"
    if is_png:
        _check_grid(str(out), n, shape, cols)
    z = torch.randn(n, int(g.z_dim), generator=torch.Generator().manual_seed(seed))  # every family has z_dim
    labels = None if asked is None else class_rows(n, asked)
    batch = max(1, BATCH_VALUES // math.prod(shape))
    try:
        with ExitStack() as stack:
            tmp_out = stack.enter_context(atomic_path(out_path)) if out_path is not None else None
            sample_dir = None
            if dir_path is not None:
                folders = sample_files.class_folders(meta.get("classes"), n_classes) if asked else None
                sample_dir = sample_files.SampleDir(stack.enter_context(sample_files.staged_dir(dir_path)),
                                                    folders)
            array, grid_parts = None, []
            for start in range(0, n, batch):
                zb = z[start:start + batch]
                y = None if labels is None else labels[start:start + batch]
                with torch.no_grad():
                    images = (g(zb) if y is None else g(zb, y)).float().clamp_(-1.0, 1.0)
                if sample_dir is not None:
                    sample_dir.write(start, to_pixels(images), y)
                if is_png:
                    grid_parts.append(images)
                elif tmp_out is not None:
                    if array is None:  # filled batch by batch: N images of 256 px need not fit in memory
                        array = np.lib.format.open_memmap(tmp_out, mode="w+", dtype=np.float32,
                                                          shape=(n, *images.shape[1:]))
                    array[start:start + images.shape[0]] = images.numpy()
            if is_png:
                save_grid(torch.cat(grid_parts), tmp_out, nrow=cols)
            elif array is not None:
                array.flush()
                del array  # closes the map before the file is renamed into place
    except OSError as err:  # unwritable directory, full disk: nothing was left behind
        given = " and ".join(f for f in (out and f"--out {out}", out_dir and f"--out-dir {out_dir}") if f)
        raise GanModelError(f"{given}: cannot write ({err.strerror or err})") from None
    return [p for p in (out_path, dir_path) if p is not None]


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        classes = [args.label] if args.label is not None else args.labels
        what = "--label" if args.label is not None else "--labels"
        paths = generate(args.model, args.num, args.seed, args.out, args.tracking_uri, classes, what,
                         out_dir=args.out_dir, overwrite=args.overwrite)
        label_note = f", classes {','.join(map(str, classes))}" if classes is not None else ""
        print(f"generate: {args.num} images from {args.model} (seed {args.seed}{label_note}) -> "
              f"{', '.join(map(str, paths))}")
    elif args.command == "sweep":
        from ganmodel.sweep.runner import run_sweep

        run_sweep(args.params, args.prepared, args.classifier, resume=args.resume, apply=args.apply)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (`ganmodel`)."""
    run_main(lambda: _main(argv))


if __name__ == "__main__":
    main()
