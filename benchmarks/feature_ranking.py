"""Do the two feature networks rank generators alike? The issue's check: score at least 6
generators of clearly different quality with the labelled classifier's features and with the
label-free rotation network's (and both concatenated); the Spearman rank correlation of their
FIDs must be at least 0.9, on mnist5k and on Fashion-MNIST.

    python benchmarks/feature_ranking.py [--dataset mnist5k] [--epochs 6] [--steps-per-epoch 60]
    python benchmarks/feature_ranking.py --dataset fashion_mnist --raw-dir /usr/share/datasets/fashion-mnist

The generators are the checkpoints of one short unconditional `conv_sn` run
(`ganmodel.training.job.run_local`, no Ray): its EMA generator after every epoch, so quality rises
from noise to digits. Each is scored by FID at N = `--n` against a seeded train subset, as the
evaluate protocol does, in each feature space; the ladder of each space (held-out images blurred
by 1, 2, 4 px) is printed too. `--cache DIR` keeps the checkpoints and the feature networks
(state dicts, read back with weights_only=True), so a rerun only scores. Exit status 1 when rho
< 0.9 between labelled and label_free.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MIN_RHO = 0.9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k", choices=("mnist5k", "mnist", "fashion_mnist"))
    ap.add_argument("--raw-dir", default="data/raw")
    ap.add_argument("--epochs", type=int, default=6, help="epochs of the GAN run: one generator per epoch")
    ap.add_argument("--steps-per-epoch", type=int, default=60)
    ap.add_argument("--n", type=int, default=500, help="N of every FID (<= the val split)")
    ap.add_argument("--clf-epochs", type=int, default=6, help="epochs of the labelled classifier")
    ap.add_argument("--selfsup-epochs", type=int, default=6, help="epochs of the rotation network")
    ap.add_argument("--selfsup-train", type=int, default=None,
                    help="train the rotation network on a seeded subset of this many train images "
                         "(default: all; 4 rotations of 54k Fashion-MNIST images take over 25 min)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="folder for checkpoints and feature networks")
    args = ap.parse_args()

    import torch
    from scipy.stats import spearmanr

    from ganmodel.classifier.choice import standardised_stack
    from ganmodel.classifier.selfsup import train_rotation_net
    from ganmodel.classifier.training import train_classifier
    from ganmodel.config import ClassifierParams, DataParams, TrainParams
    from ganmodel.data.build import prepare_dataset
    from ganmodel.data.prepared import Split
    from ganmodel.evaluation.distances import fid_against, fid_metric
    from ganmodel.evaluation.features import extract, sample_images
    from ganmodel.evaluation.ladder import calibration_ladder
    from ganmodel.networks import build_generator
    from ganmodel.training.job import run_local

    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)

    def cached(name: str, make):
        """A state-dict-only object from the cache (weights_only=True), else made and stored."""
        path = cache / f"{args.dataset}-{name}.pt" if cache is not None else None
        if path is not None and path.is_file():
            return torch.load(path, weights_only=True)
        obj = make()
        if path is not None:
            torch.save(obj, path)
        return obj

    data = DataParams(dataset=args.dataset, raw_dir=args.raw_dir)
    splits = prepare_dataset(data, log=lambda _m: None).splits
    train, val, test = splits["train"], splits["val"], splits["test"]
    n_classes = int(train.labels.max()) + 1
    cfg = TrainParams(preset="conv_sn", epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                      eval_every=1, seed=args.seed, num_workers=1)

    def train_gan() -> dict:
        snaps: dict[str, dict] = {}

        def snapshot(g: torch.nn.Module) -> dict[str, float]:
            snaps[f"epoch_{len(snaps) + 1}"] = {k: v.detach().clone() for k, v in g.state_dict().items()}
            return {}

        run_local(cfg, train.images, evaluate=snapshot)
        return snaps

    snaps = cached(f"gan-{args.epochs}x{args.steps_per_epoch}-s{args.seed}", train_gan)
    ccfg = ClassifierParams(epochs=args.clf_epochs, selfsup_epochs=args.selfsup_epochs, seed=args.seed)
    quiet = lambda _m: None  # noqa: E731
    clf_sd = cached(f"labelled-{args.clf_epochs}", lambda: train_classifier(
        ccfg, train, val, test, n_classes, quiet).model.state_dict())
    rot_train = train
    if args.selfsup_train is not None and args.selfsup_train < train.images.shape[0]:
        # A label-free network on fewer images than the labelled one: the harder side of the check.
        sub = torch.randperm(train.images.shape[0], generator=torch.Generator().manual_seed(args.seed))
        rot_train = Split(train.images[sub[: args.selfsup_train]], train.labels[sub[: args.selfsup_train]])
    rot_name = f"rotation-{args.selfsup_epochs}"
    if rot_train is not train:
        rot_name += f"-n{rot_train.images.shape[0]}"
    rot_sd = cached(rot_name, lambda: train_rotation_net(
        ccfg, rot_train, val, test, quiet).model.state_dict())

    from ganmodel.networks.classifier import EvalClassifier
    from ganmodel.networks.selfsup import RotationNet

    shape = tuple(train.images.shape[1:])
    clf = EvalClassifier(ccfg.feature_dim, n_classes, shape)
    clf.load_state_dict(clf_sd)
    rnet = RotationNet(ccfg.feature_dim, shape)
    rnet.load_state_dict(rot_sd)
    clf, rnet = clf.eval(), rnet.eval()
    nets = {"labelled": clf, "label_free": standardised_stack("label_free", rnet, clf, train, args.seed),
            "both": standardised_stack("both", rnet, clf, train, args.seed)}

    a = torch.randperm(train.images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.n]
    refs = {k: fid_metric(extract(m, train.images[a], 500)[0]) for k, m in nets.items()}
    ladders = {k: calibration_ladder(m, train.images, val.images, min(args.n, val.images.shape[0]), args.seed)
               for k, m in nets.items()}
    fids: dict[str, dict[str, float]] = {k: {} for k in nets}
    for name, sd in snaps.items():
        g = build_generator(cfg.arch, cfg.z_dim)
        g.load_state_dict(sd)
        images = sample_images(g.eval(), args.n, args.seed + 1, 500)
        for k, m in nets.items():
            fids[k][name] = fid_against(refs[k], extract(m, images, 500)[0])

    print(f"{args.dataset}: {len(snaps)} generators (epochs of one conv_sn run), N = {args.n}; rotation "
          f"network trained on {rot_train.images.shape[0]} of {train.images.shape[0]} train images")
    print(f"{'generator':<12}" + "".join(f"{k:>14}" for k in nets))
    for name in snaps:
        print(f"{name:<12}" + "".join(f"{fids[k][name]:>14.3f}" for k in nets))
    for rung in ("ladder_real", "ladder_blur1", "ladder_blur2", "ladder_blur4"):
        print(f"{rung:<12}" + "".join(f"{ladders[k][rung]:>14.3f}" for k in nets))
    rhos = {}
    for k in ("label_free", "both"):
        rho = spearmanr([fids["labelled"][n] for n in snaps], [fids[k][n] for n in snaps]).statistic
        rhos[k] = float(rho)
        verdict = "pass" if rho >= MIN_RHO else "FAIL"
        print(f"Spearman rho, labelled vs {k}: {rho:.3f} ({verdict}: >= {MIN_RHO})")
    print(json.dumps({"dataset": args.dataset, "fids": fids, "ladders": ladders, "spearman": rhos,
                      "wall_s": round(time.perf_counter() - t0, 1)}))
    raise SystemExit(0 if rhos["label_free"] >= MIN_RHO else 1)


if __name__ == "__main__":
    main()
