"""Model files: the shipped generator and the evaluation classifier, in one format.

A model file is `torch.save` of plain data: `{"kind": "generator" | "classifier",
"state_dict": {name: tensor}, "meta": {...}}`, loaded with `weights_only=True` (no pickled
classes, no code). `meta` holds what rebuilds the network (generator: `arch`, `z_dim`,
`conditional`, `n_classes`, `image_shape`; classifier: `feature_network`, `feature_dim`, `n_classes`,
`image_shape`) and where it came from
(dataset, data hash). A file's identity is the hash of its weights (`weights_hash`), not of its
bytes: the gate and the registry key on it.

This module imports torch, the network families and nothing of training, tracking or params, so
the served model can load a generator without the training stack.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganmodel.errors import GanModelError, brief
from ganmodel.io import sha256_state_dict

GENERATOR = "generator"
CLASSIFIER = "classifier"


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes (`io.sha256_state_dict`)."""
    return sha256_state_dict(state_dict)


def save_model_file(path: str | os.PathLike[str], kind: str, state_dict: dict[str, torch.Tensor],
                    meta: dict[str, Any]) -> None:
    """Write a model file of `kind` (see the module docstring)."""
    torch.save({"kind": kind, "state_dict": state_dict, "meta": dict(meta)}, path)


def read_model_file(path: str | os.PathLike[str], kind: str,
                    device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) of a model file of `kind`; a one-line `GanModelError` for a missing,
    unreadable or other kind of file. Files written before `kind` was recorded are accepted."""
    p = Path(path)
    if not p.is_file():
        hint = "; run the classifier stage first" if kind == CLASSIFIER else ""
        raise GanModelError(f"{p}: {kind} file not found{hint}")
    try:
        obj = torch.load(p, map_location=device, weights_only=True)
        sd, meta = obj["state_dict"], obj["meta"]
        if not isinstance(meta, dict) or not isinstance(sd, dict):
            raise TypeError("state_dict and meta must be mappings")
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise GanModelError(f"{p}: not a ganmodel {kind} file ({brief(err)})") from None
    if obj.get("kind", kind) != kind:
        raise GanModelError(f"{p}: is a ganmodel {obj['kind']} file, expected a {kind} file")
    return sd, meta


def file_weights_hash(path: str | os.PathLike[str], kind: str) -> str:
    """`weights_hash` of the weights in a model file."""
    return weights_hash(read_model_file(path, kind)[0])


# --- the generator ------------------------------------------------------------------------------


def save_generator(state_dict: dict[str, torch.Tensor], meta: dict[str, Any],
                   path: str | os.PathLike[str]) -> None:
    """The shipped generator file: weights plus the arch/z_dim that rebuild it."""
    for key in ("arch", "z_dim"):
        if key not in meta:
            raise ValueError(f"generator meta: missing {key!r}")
    save_model_file(path, GENERATOR, state_dict, meta)


def load_generator(path: str | os.PathLike[str],
                   device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a generator (eval mode) from a file written by `save_generator`; returns (G, meta).
    G is built at the file's `image_shape` (files from before sizes were configurable have none:
    they are all 1x28x28)."""
    from ganmodel.networks import GENERATORS, build_generator
    from ganmodel.shapes import MNIST_SHAPE

    sd, meta = read_model_file(path, GENERATOR, device)
    if meta.get("arch") not in GENERATORS:
        raise GanModelError(f"{path}: unknown generator architecture {meta.get('arch')!r}; "
                            f"expected one of {sorted(GENERATORS)}")
    try:
        n_classes = int(meta.get("n_classes", 0)) if meta.get("conditional") else 0
        shape = tuple(int(s) for s in meta.get("image_shape", MNIST_SHAPE))
        g = build_generator(meta["arch"], int(meta["z_dim"]), n_classes, shape)
        g.load_state_dict(sd)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise GanModelError(f"{path}: weights do not match arch {meta.get('arch')!r}, "
                            f"z_dim {meta.get('z_dim')!r}, image_shape {meta.get('image_shape')!r} "
                            f"({brief(err)})") from None
    return g.to(device).eval(), meta


# --- the evaluation classifier ------------------------------------------------------------------


def save_classifier(model: nn.Module, meta: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """The feature-network file: weights, what rebuilds the network (`network_meta`: its kind,
    `feature_dim`, `n_classes`, `image_shape`) and the caller's meta."""
    from ganmodel.networks.featurenet import network_meta

    save_model_file(path, CLASSIFIER, model.state_dict(), {**meta, **network_meta(model)})


def load_classifier(path: str | os.PathLike[str],
                    device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the evaluation feature network (eval mode) from its file; returns (model, meta).
    Files from before the kind and shape were recorded hold a labelled classifier of 28x28
    greyscale images."""
    from ganmodel.networks.featurenet import build_feature_network

    sd, meta = read_model_file(path, CLASSIFIER, device)
    try:
        model = build_feature_network(meta)
        model.load_state_dict(sd)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise GanModelError(f"{path}: not a ganmodel classifier file ({brief(err)})") from None
    return model.to(device).eval(), meta
