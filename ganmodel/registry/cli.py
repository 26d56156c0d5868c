"""The `ganmodel` command.

    ganmodel generate --model MODEL -n 64 --seed 0 --out grid.png|samples.npy [--tracking-uri URI]
                      [--label 7 | --labels 0,1,2]
    ganmodel sweep [--params params.yaml] [--prepared data/prepared] [--classifier models/classifier.pt]
                   [--resume] [--apply]

MODEL is a registry URI (`models:/<name>@<alias>`, `models:/<name>/<version>`, `models:/m-<id>`),
a run artifact (`runs:/<run_id>/<path>`: the pyfunc model directory or a generator file), or a
local generator file written by the train stage. `.png` writes a sample grid, `.npy` a float32
array [N, 1, 28, 28] in [-1, 1]. The latent vectors are drawn from `torch.Generator` seeded with
--seed, so a seed always gives the same images for the same weights.

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
    g.add_argument("--out", required=True, help="output file: .png (grid) or .npy (float32 [N, 1, 28, 28])")
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


def generate(model: str, n: int, seed: int, out: str, tracking_uri: str | None = None,
             classes: list[int] | None = None, what: str = "--labels") -> Path:
    """Write `n` samples of `model` to `out` (.png grid or .npy array); returns the output path.
    A conditional model makes `classes` (default: all) in equal runs, one grid row per class."""
    out_path = Path(out)
    suffix = out_path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise GanModelError(f"--out {out}: unknown output extension {suffix or '(none)'!r}; "
                            f"expected one of {', '.join(OUTPUT_SUFFIXES)}")
    if not out_path.parent.is_dir():
        raise GanModelError(f"--out {out}: directory {out_path.parent} does not exist")
    if out_path.is_dir():
        raise GanModelError(f"--out {out}: is a directory; expected a file name")

    import tempfile

    import numpy as np
    import torch

    from ganmodel.artifacts import load_generator
    from ganmodel.io import atomic_path
    from ganmodel.networks import class_rows

    with tempfile.TemporaryDirectory(prefix="ganmodel-generate-") as tmp:
        g, _ = load_generator(resolve_generator_file(model, tracking_uri, tmp))
    asked, cols = sample_labels(n, int(getattr(g, "n_classes", 0)), classes, what)
    z_dim = int(g.z_dim)  # every generator family records its latent width
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = (g(z) if asked is None else g(z, class_rows(n, asked))).float().clamp_(-1.0, 1.0)
    try:
        with atomic_path(out_path) as tmp_out:
            if suffix == ".png":
                from ganmodel.figures import save_grid

                save_grid(images, tmp_out, nrow=cols)
            else:
                with open(tmp_out, "wb") as f:
                    np.save(f, images.numpy().astype(np.float32))
    except OSError as err:  # unwritable directory, full disk: atomic_path left nothing behind
        raise GanModelError(f"--out {out}: cannot write ({err.strerror or err})") from None
    return out_path


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        classes = [args.label] if args.label is not None else args.labels
        what = "--label" if args.label is not None else "--labels"
        path = generate(args.model, args.num, args.seed, args.out, args.tracking_uri, classes, what)
        label_note = f", classes {','.join(map(str, classes))}" if classes is not None else ""
        print(f"generate: {args.num} images from {args.model} (seed {args.seed}{label_note}) -> {path}")
    elif args.command == "sweep":
        from ganmodel.sweep.runner import run_sweep

        run_sweep(args.params, args.prepared, args.classifier, resume=args.resume, apply=args.apply)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (`ganmodel`)."""
    run_main(lambda: _main(argv))


if __name__ == "__main__":
    main()
