"""Sample grids and single images: greyscale PNGs byte for byte as before colour, RGB for colour
(with the expected pixels), and the MLflow tracker's sheets for colour tensors."""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np
import PIL
import pytest
import torch
from PIL import Image

from ganmodel.figures import grid_size, make_grid, save_grid, save_image, shrink_tiles, to_pixels

pytest_plugins = ["fixtures_mlflow"]  # mlflow_store

# sha256 of save_grid's PNG for `_grey()` before colour support (computed with the code of cbb6c06,
# Pillow 13.0.0): the default MNIST pipeline's sample sheets must not change by a byte.
FROZEN_GREY_PNG = {None: "d59da90baa0d35b6ef383a144a338b284d7e35ac81c62c1aa94bce0e51a7ed3b",
                   3: "57c9e0550b692fd3a4e1978db01c792d34ac677044d8720588ab4705a4e2bd78"}


def _grey() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(10, 1, 28, 28, generator=g) * 2.4 - 1.2  # beyond [-1, 1] too: clamped


def _png(images: torch.Tensor, **kw) -> bytes:
    buf = io.BytesIO()
    save_grid(images, buf, **kw)
    return buf.getvalue()


def _old_save_grid(images: torch.Tensor, nrow: int | None) -> bytes:
    """save_grid as it was before colour (cbb6c06), for greyscale images."""
    from torchvision.utils import make_grid as tv_grid

    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = tv_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=2,
                   normalize=True, value_range=(-1, 1), pad_value=1.0)
    buf = io.BytesIO()
    Image.fromarray(grid[0].mul(255).round().to(torch.uint8).numpy(), mode="L").save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("nrow", [None, 3])
def test_greyscale_grid_bytes_are_unchanged(nrow):
    png = _png(_grey(), nrow=nrow)
    assert png == _old_save_grid(_grey(), nrow)
    if PIL.__version__ == "13.0.0":  # the PNG encoder's bytes are the frozen ones' for this Pillow
        assert hashlib.sha256(png).hexdigest() == FROZEN_GREY_PNG[nrow]
    img = Image.open(io.BytesIO(png))
    assert img.mode == "L" and img.size == grid_size(10, (28, 28), nrow)


def test_colour_grid_round_trip():
    """Red, green, blue and mid-grey tiles, 2 per row: an RGB PNG with those pixels, white padding."""
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [0.0, 0, 0], [0.5, -0.5, 2.0]])
    images = colours[:, :, None, None].expand(-1, -1, 6, 8).clone()  # H 6, W 8: not square
    png = _png(images, nrow=2)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.mode == "RGB"
    assert img.size == grid_size(5, (6, 8), 2) == (2 + 2 * 10, 2 + 3 * 8)
    px = np.asarray(img)
    expected = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (191, 64, 255)]
    for i, rgb in enumerate(expected):
        r, c = divmod(i, 2)
        tile = px[2 + r * 8: 2 + r * 8 + 6, 2 + c * 10: 2 + c * 10 + 8]
        assert (tile == rgb).all(), (i, tile[0, 0])
    assert (px[0] == 255).all() and (px[:, 0] == 255).all()  # padding lines
    assert (px[2 + 2 * 8:, 2 + 10:] == 255).all()  # the empty sixth tile
    assert make_grid(images, 2).shape == (img.size[1], img.size[0], 3)


def test_other_channel_counts_are_refused():
    with pytest.raises(ValueError, match="C 1 or 3"):
        make_grid(torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="C 1 or 3"):
        to_pixels(torch.zeros(2, 8, 8))


def test_max_tile_shrinks_big_tiles_only():
    big = torch.rand(4, 3, 128, 96) * 2 - 1
    assert shrink_tiles(big, 64).shape == (4, 3, 64, 48)
    assert shrink_tiles(big, 128) is big
    small = _grey()
    assert _png(small, max_tile=64) == _png(small)  # 28 px tiles untouched
    flat = torch.full((2, 3, 100, 100), 0.5)
    grid = make_grid(flat, max_tile=40)  # a factor 3 average: 33 px tiles
    assert grid.shape == (*reversed(grid_size(2, (33, 33))), 3) == (37, 72, 3)
    assert (grid[2:35, 2:35] == 191).all()


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB")])
def test_single_image_png(tmp_path: Path, channels: int, mode: str):
    x = torch.rand(2, channels, 12, 12) * 2 - 1
    pixels = to_pixels(x)
    save_image(pixels[1], tmp_path / "one.png")
    img = Image.open(tmp_path / "one.png")
    assert img.mode == mode and img.size == (12, 12)
    back = np.asarray(img).reshape(12, 12, channels).transpose(2, 0, 1)
    assert np.array_equal(back, pixels[1].numpy())
    # The grid's mapping: a lone image's grid (unpadded) holds the same pixels.
    assert grid_size(1, (12, 12)) == (12, 12)
    tile = make_grid(x[1:], 1)
    assert np.array_equal(tile.numpy().reshape(12, 12, channels).transpose(2, 0, 1), pixels[1].numpy())


def test_tracker_logs_colour_sheets(mlflow_store, tmp_path: Path):
    """What the training loop logs per epoch, for colour samples: an RGB sheet, tiles capped."""
    import mlflow

    from ganmodel.tracking.tracker import SHEET_MAX_TILE, MlflowTracker

    with mlflow.start_run(experiment_id=mlflow_store.experiment_id) as run:
        pass
    tracker = MlflowTracker(run.info.run_id, mlflow_store.uri)
    tracker.log_image(torch.rand(6, 3, 32, 32) * 2 - 1, "samples/epoch_0001.png", nrow=3)
    tracker.log_image(torch.rand(4, 3, 128, 128) * 2 - 1, "samples/epoch_0002.png")
    tracker.log_image(_grey(), "samples/grey.png")
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="samples",
                                                     dst_path=str(tmp_path)))
    one, two = Image.open(local / "epoch_0001.png"), Image.open(local / "epoch_0002.png")
    assert one.mode == "RGB" and one.size == grid_size(6, (32, 32), 3)
    assert two.mode == "RGB" and two.size == grid_size(4, (SHEET_MAX_TILE, SHEET_MAX_TILE))
    assert (local / "grey.png").read_bytes() == _png(_grey())
