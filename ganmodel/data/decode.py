"""One image file to one prepared image: Pillow decoding, EXIF orientation, every mode to L or RGB
with transparency composited onto a background, then a square of `resolution` px by a resize policy.

Pure and picklable (no torch, no params model): the process pool of `decode_pool` runs it per file.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganmodel.errors import brief

# What `Image.open` may identify a file as; anything else (TIFF, PSD, ...) is "not an image" here.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
# Files considered at all (by name, case-insensitive); other files in a folder are ignored.
EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif"})
RESIZE_POLICIES = ("center-crop", "pad", "stretch")
# Pillow's two-step resize (integer box reduce, then Lanczos) keeps at least this factor above the
# target before the Lanczos step: "indistinguishable from fair resampling" at 3 (Pillow's docs).
REDUCING_GAP = 3.0


class BadImage(Exception):
    """A file that cannot become a training image; the message says why, in a few words."""


@dataclass(frozen=True)
class DecodeOptions:
    """How files become images: a square side, 1 or 3 channels, a resize policy, the colour under
    transparency (and of pad bands), and the largest image, by its header, that is decoded."""

    resolution: int
    channels: int
    resize: str
    background: tuple[int, int, int]
    max_image_pixels: int

    @property
    def max_file_bytes(self) -> int:
        """No image under the pixel limit needs more bytes (8 per pixel: 16-bit RGBA stored raw),
        plus room for metadata: a larger file is not read at all."""
        return 8 * self.max_image_pixels + (16 << 20)

    def over_limit(self, pixels: int) -> str:
        return f"{pixels:,} pixels, over data.max_image_pixels={self.max_image_pixels:,}"

    def too_large(self) -> BadImage:
        """A file over `max_file_bytes`: never read to its end."""
        return BadImage(f"over {self.max_file_bytes:,} bytes, more than an image under "
                        f"data.max_image_pixels={self.max_image_pixels:,} needs")


@contextmanager
def _pixel_limit(limit: int) -> Iterator[None]:
    """Pillow's own decompression-bomb check at our limit (it raises above twice the limit, in
    `Image.open`, before we see the size); its warning is redundant with our size check."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def decode_image(data: bytes, opts: DecodeOptions) -> np.ndarray:
    """The file's bytes as uint8 [channels, resolution, resolution]; `BadImage` if it is empty, not
    an image, over the pixel limit by its header (never decoded then), truncated or corrupt."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    if len(data) > opts.max_file_bytes:
        raise opts.too_large()
    with _pixel_limit(opts.max_image_pixels):
        try:
            im = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError as err:
            raise _bomb(err, opts) from None
        except UnidentifiedImageError:
            raise BadImage("not an image (expected PNG, JPEG, WebP, BMP or GIF)") from None
        except Exception as err:  # noqa: BLE001 - any header Pillow rejects is the same bad file
            raise BadImage(f"corrupt image header ({brief(err)})") from None
        with im:
            w, h = im.size
            if w * h > opts.max_image_pixels:
                raise BadImage(f"{w}x{h} = {opts.over_limit(w * h)}")
            if w == 0 or h == 0:
                raise BadImage(f"empty image ({w}x{h})")
            try:
                return _prepare(im, opts)
            except Image.DecompressionBombError as err:  # a later frame, a crop
                raise _bomb(err, opts) from None
            except Exception as err:  # noqa: BLE001 - Pillow reports bad data as many types
                raise BadImage(f"truncated or corrupt image ({brief(err)})") from None


def _bomb(err: Image.DecompressionBombError, opts: DecodeOptions) -> BadImage:
    """Pillow's refusal (above twice its limit, before we see the size) in our words."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    return BadImage(opts.over_limit(int(found.group(1))) if found else
                    f"over data.max_image_pixels={opts.max_image_pixels:,} ({brief(err)})")


def _scale(size: tuple[int, int], opts: DecodeOptions) -> tuple[float, float]:
    """Horizontal and vertical scale factors the resize policy applies."""
    w, h = size
    r = opts.resolution
    if opts.resize == "stretch":
        return r / w, r / h
    s = r / (min(w, h) if opts.resize == "center-crop" else max(w, h))
    return s, s


def _prepare(im: Image.Image, opts: DecodeOptions) -> np.ndarray:
    if im.format == "JPEG":
        # Decode at a reduced DCT scale when the image is much larger than needed (what
        # Image.thumbnail does): never below REDUCING_GAP x the size the policy resizes to.
        sx, sy = _scale(im.size, opts)
        if sx < 1 / REDUCING_GAP and sy < 1 / REDUCING_GAP:
            gap = REDUCING_GAP
            im.draft(None, (math.ceil(im.width * sx * gap), math.ceil(im.height * sy * gap)))
    im.load()
    ImageOps.exif_transpose(im, in_place=True)
    im = _normalise_mode(im, opts.channels)
    im = _resize(im, opts)
    if opts.channels == 3 and im.mode in ("L", "LA"):
        im = im.convert("RGB" if im.mode == "L" else "RGBA")  # at the target size: cheap
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if im.mode in ("LA", "RGBA"):
        arr = _composite(arr, opts)
    if opts.resize == "pad" and arr.shape[:2] != (opts.resolution, opts.resolution):
        arr = _pad(arr, opts)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.uint8)


def _normalise_mode(im: Image.Image, channels: int) -> Image.Image:
    """L, LA, RGB or RGBA: greyscale stays greyscale (RGB comes last and is cheap at the target
    size); colour becomes greyscale first when `channels` is 1 (resizing one band is cheaper)."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit greyscale: Pillow's convert("L") clips values above 255; scale 0..65535 instead.
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8), "L")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("La", "PA") or (mode in ("L", "P") and "transparency" in im.info):
        im = im.convert("LA" if mode in ("L", "La") else "RGBA")
    elif mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "RGBa" or (mode == "RGB" and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        raise BadImage(f"unsupported image mode {mode}")
    if channels == 1 and im.mode in ("RGB", "RGBA"):
        im = im.convert("LA" if im.mode == "RGBA" else "L")  # ITU-R 601-2 luma
    return im


def _resize(im: Image.Image, opts: DecodeOptions) -> Image.Image:
    """The square (center-crop, stretch) or the image scaled to fit inside it (pad). Pillow resizes
    images with alpha premultiplied, so transparent pixels' colour never bleeds in."""
    w, h = im.size
    r = opts.resolution
    if opts.resize == "center-crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        box = (left, top, left + side, top + side)
        size = (r, r)
    else:
        box = (0, 0, w, h)
        sx, sy = _scale(im.size, opts)
        size = (r, r) if opts.resize == "stretch" else (max(1, round(w * sx)), max(1, round(h * sy)))
    if (box[2] - box[0], box[3] - box[1]) == size:
        return im.crop(box) if box != (0, 0, w, h) else im
    return im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)


def _background(opts: DecodeOptions) -> np.ndarray:
    bg = np.asarray(opts.background, dtype=np.float32)
    return bg[:1] if opts.channels == 1 else bg  # grey when channels is 1 (params check that)


def _composite(arr: np.ndarray, opts: DecodeOptions) -> np.ndarray:
    """Colour bands over the background by their alpha, rounded to uint8."""
    colour = arr[..., :-1].astype(np.float32)
    alpha = arr[..., -1:].astype(np.float32) / 255.0
    out = colour * alpha + _background(opts) * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pad(arr: np.ndarray, opts: DecodeOptions) -> np.ndarray:
    """`arr` centred on a square of the background colour."""
    r = opts.resolution
    h, w, c = arr.shape
    canvas = np.empty((r, r, c), dtype=np.uint8)
    canvas[...] = _background(opts).astype(np.uint8)
    top, left = (r - h) // 2, (r - w) // 2
    canvas[top:top + h, left:left + w] = arr
    return canvas
