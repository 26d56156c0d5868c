"""The `ganmodel` command.

    ganmodel generate --model MODEL -n 64 --seed 0 --out grid.png|samples.npy [--tracking-uri URI]

MODEL is a registry URI (`models:/<name>@<alias>`, `models:/<name>/<version>`, `models:/m-<id>`),
a run artifact (`runs:/<run_id>/<path>`: the pyfunc model directory or a generator file), or a
local generator file written by the train stage. `.png` writes a sample grid, `.npy` a float32
array [N, 1, 28, 28] in [-1, 1]. The latent vectors are drawn from `torch.Generator` seeded with
--seed, so a seed always gives the same images for the same weights.

Registry URIs only download the generator weights (`artifacts/generator.pt` of the logged model)
and rebuild the network; they never unpickle the pyfunc wrapper. Heavy modules (torch, mlflow)
are imported only when a command needs them, so `ganmodel --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from ganmodel.entry import run_main
from ganmodel.errors import GanModelError, brief

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
    g.add_argument("--out", required=True, help="output file: .png (grid) or .npy (float32 [N, 1, 28, 28])")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db)")
    return ap


# ---------------------------------------------------------------------------------------------
# Resolving a model reference to a local generator file


def _mlflow_error(err: Exception) -> str:
    msg = str(getattr(err, "message", err)).strip().splitlines()
    return msg[0] if msg else type(err).__name__


def _local_store_check(uri: str) -> None:
    """A missing sqlite store would be created empty (and slowly): say so instead."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise GanModelError(f"no MLflow store at {db} (tracking URI {uri}); run the pipeline first or "
                                "set --tracking-uri / MLFLOW_TRACKING_URI")


def _tracking(tracking_uri: str | None) -> str:
    from ganmodel.runs import configure_tracking, default_tracking_uri

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stderr for errors
    # Checked before configure_tracking, which creates the store's directory.
    _local_store_check(os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri("."))
    return configure_tracking(".")


def _resolve_registered(client, ref: str, name: str, alias: str | None, version: str | None) -> str:
    """Check name/alias/version with clear messages; return a models:/name/version URI."""
    from mlflow.exceptions import MlflowException

    def missing(err: MlflowException) -> bool:
        return getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"

    try:
        rm = client.get_registered_model(name)
    except MlflowException as err:
        if missing(err):
            raise GanModelError(f"{ref}: no registered model named {name!r}") from None
        raise
    if alias is not None:
        # Read the alias map: a missing alias is an INVALID_PARAMETER_VALUE error otherwise.
        aliases = dict(getattr(rm, "aliases", None) or {})
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise GanModelError(f"{ref}: model {name!r} has no alias {alias!r} (aliases: {known})")
        return f"models:/{name}/{aliases[alias]}"
    if version is not None:
        if not version.isdigit():
            raise GanModelError(f"{ref}: version must be a number or use @alias, got {version!r}")
        try:
            client.get_model_version(name, version)
        except MlflowException as err:
            if missing(err):
                raise GanModelError(f"{ref}: model {name!r} has no version {version}") from None
            raise
        return f"models:/{name}/{version}"
    raise GanModelError(f"{ref}: name a version or an alias, e.g. models:/{name}@champion")


def resolve_generator_file(ref: str, tracking_uri: str | None, workdir: str | os.PathLike[str]) -> Path:
    """A local `save_generator` file for `ref` (downloaded into `workdir` if remote)."""
    if not ref.startswith(("models:/", "runs:/")):
        p = Path(ref)
        if not p.is_file():
            raise GanModelError(f"{ref}: no such generator file (or use models:/<name>@<alias>, runs:/...)")
        return p

    uri = _tracking(tracking_uri)
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ganmodel.serving import WEIGHTS_FILE, WEIGHTS_IN_MODEL

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        if ref.startswith("models:/"):
            m = _MODELS_URI.match(ref)
            if m is None:
                raise GanModelError(f"{ref}: expected models:/<name>@<alias> or models:/<name>/<version>")
            if m["name"].startswith("m-") and m["alias"] is None and m["version"] is None:
                base = ref.rstrip("/")  # a logged model id
            else:
                base = _resolve_registered(client, ref, m["name"], m["alias"], m["version"])
            local = mlflow.artifacts.download_artifacts(f"{base}/{WEIGHTS_IN_MODEL}", dst_path=str(workdir))
            return Path(local)
        local = Path(mlflow.artifacts.download_artifacts(ref, dst_path=str(workdir)))
    except GanModelError:
        raise
    except MlflowException as err:
        raise GanModelError(f"{ref}: {_mlflow_error(err)}") from None
    except OSError as err:
        raise GanModelError(f"{ref}: cannot download the generator ({brief(err)})") from None
    if local.is_dir():
        for cand in (local / WEIGHTS_IN_MODEL, local / WEIGHTS_FILE):
            if cand.is_file():
                return cand
        raise GanModelError(f"{ref}: no {WEIGHTS_IN_MODEL} or {WEIGHTS_FILE} in that artifact directory")
    return local


# ---------------------------------------------------------------------------------------------


def generate(model: str, n: int, seed: int, out: str, tracking_uri: str | None = None) -> Path:
    """Write `n` samples of `model` to `out` (.png grid or .npy array); returns the output path."""
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

    from ganmodel.io import atomic_path
    from ganmodel.training.checkpoint import load_generator

    with tempfile.TemporaryDirectory(prefix="ganmodel-generate-") as tmp:
        g = load_generator(resolve_generator_file(model, tracking_uri, tmp))
    z_dim = int(g.z_dim)  # every generator family records its latent width
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = g(z).float().clamp_(-1.0, 1.0)
    try:
        with atomic_path(out_path) as tmp_out:
            if suffix == ".png":
                from ganmodel.images import save_grid

                save_grid(images, tmp_out)
            else:
                with open(tmp_out, "wb") as f:
                    np.save(f, images.numpy().astype(np.float32))
    except OSError as err:  # unwritable directory, full disk: atomic_path left nothing behind
        raise GanModelError(f"--out {out}: cannot write ({err.strerror or err})") from None
    return out_path


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        path = generate(args.model, args.num, args.seed, args.out, args.tracking_uri)
        print(f"generate: {args.num} images from {args.model} (seed {args.seed}) -> {path}")
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (`ganmodel`)."""
    run_main(lambda: _main(argv))


if __name__ == "__main__":
    main()
