"""Oracle "generators": modules that return real images through the generator interface, so the
evaluate protocol can be calibrated with the very code that scores real generators.

- held-out real images: what a perfect generator would produce (fid_ratio about 1, no copying);
- training images: a generator that copies its data (the memorisation figure must flag it);
- one image, always: total mode collapse (recall, coverage and the gate must fail it);
- held-out images degraded by a known amount (blurred): a ladder of known-bad generators.

Each samples without replacement from a seeded order of its pool (per class when it is asked for
classes) and starts the order again when the pool runs out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ganmodel.data.prepared import to_unit_range
from ganmodel.evaluation.ladder import gaussian_blur  # noqa: F401 - the blurred oracles' transform
from ganmodel.networks import check_labels

Transform = Callable[[torch.Tensor], torch.Tensor]  # float images [B, C, H, W] in [-1, 1] -> same


class RealImages(nn.Module):
    """Serves `images` (uint8 [N, C, H, W]) as a generator of latent width `z_dim`.

    With `n_classes > 0` it is conditional: row i is an image of class `labels[i]` (`pool_labels`
    gives each pool image's class); with `by_class=False` it takes the labels it is asked for but
    ignores them (a collapsed conditional generator). `transform` degrades what it returns."""

    def __init__(self, images: torch.Tensor, pool_labels: torch.Tensor | None = None, n_classes: int = 0,
                 z_dim: int = 8, seed: int = 0, by_class: bool = True,
                 transform: Transform | None = None) -> None:
        super().__init__()
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"images: expected a non-empty uint8 [N, C, H, W] pool, got {images.dtype} "
                             f"{list(images.shape)}")
        if n_classes and by_class and (pool_labels is None or pool_labels.shape != (images.shape[0],)):
            raise ValueError("pool_labels: a conditional oracle needs one label per pool image")
        self.z_dim, self.n_classes = z_dim, n_classes
        self.image_shape = tuple(images.shape[1:])
        self.images, self.transform, self.by_class = images, transform, bool(n_classes and by_class)
        self._gen = torch.Generator().manual_seed(seed)
        groups = range(n_classes) if self.by_class else [None]
        self._pools = {c: (torch.arange(images.shape[0]) if c is None
                           else torch.nonzero(pool_labels == c).flatten()) for c in groups}
        self._orders: dict[int | None, list[int]] = {c: [] for c in groups}
        # A parameter, so callers find the module's device as they do for a real generator.
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)

    def _next(self, c: int | None) -> int:
        if not self._orders[c]:
            pool = self._pools[c]
            if pool.numel() == 0:
                raise ValueError(f"oracle: no pool image of class {c}")
            self._orders[c] = pool[torch.randperm(pool.numel(), generator=self._gen)].tolist()
        return self._orders[c].pop()

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, z.shape[0], self.n_classes, "RealImages labels")
        keys = [int(c) for c in y.tolist()] if self.by_class else [None] * z.shape[0]
        idx = torch.tensor([self._next(c) for c in keys], dtype=torch.long)
        x = to_unit_range(self.images[idx]).to(z.device)
        return self.transform(x) if self.transform is not None else x
