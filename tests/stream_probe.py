"""A driver script: Ray Train workers read the train split through the pipeline's Ray Data path
(`ray_data.train_dataset` + `RayDataBatches`, exactly what `train.data_loading: stream` uses) for
two epochs, and record which images each rank saw. Images carry their own index in their first
two pixels (`id_images`).

    python tests/stream_probe.py ADDRESS|local PREPARED_DIR OUT_JSON WORKERS BATCH_SIZE

Run as a subprocess (its own Ray driver), locally or attached to a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

STEPS_EPOCHS = 2
N = 1000  # images in the split the tests write


def id_images(n: int, side: int = 4) -> torch.Tensor:
    """uint8 [n, 1, side, side] whose first two pixels spell the image's index (base 256)."""
    images = torch.zeros(n, 1, side, side, dtype=torch.uint8)
    ids = torch.arange(n)
    images.view(n, -1)[:, 0] = (ids // 256).to(torch.uint8)
    images.view(n, -1)[:, 1] = (ids % 256).to(torch.uint8)
    return images


def image_ids(images: torch.Tensor) -> list[int]:
    flat = images.reshape(images.shape[0], -1).long()
    return (flat[:, 0] * 256 + flat[:, 1]).tolist()


def write_id_split(prepared: Path, n: int = N, shard_rows: int = 90, group_rows: int = 30) -> Path:
    """A prepared train split of `n` id images (label: id % 7) in many shards and row groups."""
    from ganmodel.data.shards import write_split

    write_split(prepared, "train", id_images(n), torch.arange(n) % 7, shard_bytes=16 * shard_rows,
                row_group_bytes=16 * group_rows)
    return prepared


def run_probe(address: str, prepared: Path, out: Path, workers: int, batch: int, env: dict | None = None,
           cwd: Path | None = None) -> list[dict]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), address, str(prepared), str(out),
                           str(workers), str(batch)], capture_output=True, text=True, timeout=600, env=env,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def check_disjoint_full_epochs(ranks: list[dict], n: int, batch: int) -> None:
    """Each epoch: the ranks' rows are disjoint and cover the split up to the equal split's and
    drop_last's remainder; every rank took the same number of steps; labels came with images."""
    world = len(ranks)
    assert len({r["steps"] for r in ranks}) == 1
    for e in range(len(ranks[0]["epochs"])):
        per = [set(r["epochs"][e]["ids"]) for r in ranks]
        assert all(r["epochs"][e]["labels_ok"] for r in ranks)
        assert all(len(r["epochs"][e]["ids"]) == len(p) == ranks[0]["steps"] * batch // world
                   for r, p in zip(ranks, per, strict=True))
        union = set().union(*per)
        assert len(union) == sum(map(len, per))  # disjoint
        assert len(union) >= n - (n % batch) - world  # everything, up to the remainders



def _worker(config: dict) -> None:
    import ray
    import ray.train

    from ganmodel.data.shards import ShardReader
    from ganmodel.training.ray_data import DATASET, RayDataBatches

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    reader = ShardReader(config["prepared"], DATASET)
    shard = ray.train.get_dataset_shard(DATASET)
    src = RayDataBatches(shard, len(reader), reader.image_shape, reader.labels(), config["batch_size"], 0,
                         rank, world, torch.device("cpu"))
    n_steps = len(src) // config["batch_size"]
    epochs = []
    for epoch in range(STEPS_EPOCHS):
        seen, labels_ok = [], True
        for x, y in src.epoch(epoch, torch.Generator(), n_steps):
            ids = image_ids(x)
            labels_ok &= y.tolist() == [i % 7 for i in ids]  # labels travel with their images
            seen.extend(ids)
        epochs.append({"ids": seen, "labels_ok": labels_ok})
    with open(f"{config['out']}.rank{rank}", "w") as f:
        json.dump({"rank": rank, "node": ray.get_runtime_context().get_node_id(), "steps": n_steps,
                   "epochs": epochs}, f)


def main() -> None:
    address, prepared, out, workers, batch = sys.argv[1:6]
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ganmodel.training.cluster import apply_ray_env_defaults
    from ganmodel.training.ray_data import DATASET, train_dataset

    apply_ray_env_defaults()
    if address == "local":
        ray.init(num_cpus=int(workers) + 1, include_dashboard=False, logging_level="ERROR")
    else:
        ray.init(address=address, logging_level="ERROR")
    trainer = TorchTrainer(
        _worker, train_loop_config={"prepared": prepared, "out": out, "batch_size": int(batch)},
        datasets={DATASET: train_dataset(prepared, seed=0)},
        scaling_config=ScalingConfig(num_workers=int(workers), resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="stream-probe", storage_path=str(__import__("pathlib").Path(out).parent)))
    trainer.fit()
    ranks = []
    for r in range(int(workers)):
        with open(f"{out}.rank{r}") as f:
            ranks.append(json.load(f))
    with open(out, "w") as f:
        json.dump(ranks, f)


if __name__ == "__main__":
    main()
