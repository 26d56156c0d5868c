"""Decoding one image file (the folder dataset): formats, modes and transparency, EXIF orientation,
the three resize policies, and bad files (never decoded when the header says they are too large)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from ganmodel.data.decode import BadImage, DecodeOptions, decode_image

WHITE = (255, 255, 255)


def opts(resolution: int = 16, channels: int = 3, resize: str = "center-crop",
         background: tuple[int, int, int] = WHITE, max_image_pixels: int = 1_000_000) -> DecodeOptions:
    return DecodeOptions(resolution, channels, resize, background, max_image_pixels)


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def solid(mode: str, colour: object, size: tuple[int, int] = (16, 16)) -> Image.Image:
    return Image.new(mode, size, colour)  # type: ignore[arg-type]


def palette(transparent: bool) -> bytes:
    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 1: red
    return encode(im, "PNG", **({"transparency": 1} if transparent else {}))


def pixel(arr: np.ndarray) -> tuple[int, ...]:
    """The colour of a solid decoded image (asserting it is solid)."""
    flat = arr.reshape(arr.shape[0], -1)
    assert (flat == flat[:, :1]).all(), "expected one colour"
    return tuple(int(v) for v in flat[:, 0])


# --- formats and modes: each a 16x16 solid image, so no resampling is involved ------------------


@pytest.mark.parametrize(("make", "rgb", "grey"), [
    (lambda: encode(solid("RGB", (255, 0, 0)), "PNG"), (255, 0, 0), (76,)),  # ITU-R 601-2 luma
    (lambda: encode(solid("L", 100), "PNG"), (100, 100, 100), (100,)),
    (lambda: encode(solid("1", 1), "BMP"), WHITE, (255,)),
    (lambda: encode(solid("RGB", (10, 200, 30)), "BMP"), (10, 200, 30), None),
    (lambda: encode(solid("RGB", (10, 200, 30)), "WEBP", lossless=True), (10, 200, 30), None),
    (lambda: palette(transparent=False), (255, 0, 0), (76,)),
    (lambda: palette(transparent=True), WHITE, (255,)),  # the transparent index shows the background
    (lambda: encode(solid("RGBA", (255, 0, 0, 128)), "PNG"), (255, 127, 127), None),
    (lambda: encode(solid("RGBA", (0, 0, 0, 0)), "PNG"), WHITE, (255,)),
    (lambda: encode(solid("LA", (0, 128)), "PNG"), (127, 127, 127), (127,)),
    # 16-bit greyscale scales 0..65535 to 0..255 (Pillow's own convert("L") would clip it to 255).
    (lambda: encode(Image.fromarray(np.full((16, 16), 25700, dtype=np.uint16)), "PNG"), (100,) * 3, (100,)),
])
def test_modes_become_rgb_or_grey(make, rgb, grey) -> None:
    data = make()
    assert pixel(decode_image(data, opts(channels=3))) == rgb
    if grey is not None:
        assert pixel(decode_image(data, opts(channels=1))) == grey


def test_16_bit_png_keeps_its_gradient() -> None:
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    im = Image.fromarray(ramp)
    assert im.mode == "I;16"
    out = decode_image(encode(im, "PNG"), opts(channels=1))
    np.testing.assert_array_equal(out[0], np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_cmyk_jpeg_converts_to_rgb() -> None:
    data = encode(solid("CMYK", (0, 255, 255, 0)), "JPEG", quality=100)  # no cyan/black: red
    r, g, b = pixel(decode_image(data, opts(resize="stretch")))
    assert r > 245 and g < 10 and b < 10


def test_background_colour_and_grey_level() -> None:
    data = encode(solid("RGBA", (0, 0, 0, 0)), "PNG")
    assert pixel(decode_image(data, opts(background=(0, 128, 255)))) == (0, 128, 255)
    assert pixel(decode_image(data, opts(channels=1, background=(30, 30, 30)))) == (30,)


def test_gif_first_frame() -> None:
    frames = [solid("RGB", (255, 0, 0)), solid("RGB", (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert pixel(decode_image(data, opts())) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    # Stored 64 wide, 32 tall: left half dark, right half bright. EXIF orientation 6 says "rotate
    # 90 degrees clockwise to display": shown 32 wide, 64 tall, the dark half on top.
    arr = np.zeros((32, 64), dtype=np.uint8)
    arr[:, 32:] = 255
    im = Image.fromarray(arr).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = decode_image(encode(im, "JPEG", quality=95, exif=exif), opts(resize="stretch", channels=1))[0]
    assert rotated[:6].mean() < 30 and rotated[-6:].mean() > 225  # dark top, bright bottom
    plain = decode_image(encode(im, "JPEG", quality=95), opts(resize="stretch", channels=1))[0]
    assert plain[:, :6].mean() < 30 and plain[:, -6:].mean() > 225  # dark left, bright right


# --- resize policies ----------------------------------------------------------------------------


def _bands() -> bytes:
    """64 x 32: green edge bands (16 px), blue then red in the middle square."""
    arr = np.zeros((32, 64, 3), dtype=np.uint8)
    arr[:, :16] = arr[:, 48:] = (0, 255, 0)
    arr[:, 16:32] = (0, 0, 255)
    arr[:, 32:48] = (255, 0, 0)
    return encode(Image.fromarray(arr), "PNG")


def _is(px: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> bool:
    return bool(np.all(np.abs(px.astype(int) - rgb) <= tol))


def test_center_crop_keeps_the_middle_square() -> None:
    out = decode_image(_bands(), opts(resize="center-crop")).transpose(1, 2, 0)
    assert out.shape == (16, 16, 3)
    assert _is(out[8, 1], (0, 0, 255)) and _is(out[8, 14], (255, 0, 0))
    assert not (out[..., 1] > 128).any()  # no green: the edge bands were cut


def test_stretch_keeps_everything_squashed() -> None:
    out = decode_image(_bands(), opts(resize="stretch")).transpose(1, 2, 0)
    assert _is(out[0, 0], (0, 255, 0)) and _is(out[15, 15], (0, 255, 0))
    assert _is(out[8, 6], (0, 0, 255)) and _is(out[8, 9], (255, 0, 0))


def test_pad_fits_inside_bands_of_background() -> None:
    out = decode_image(_bands(), opts(resize="pad", background=(50, 60, 70))).transpose(1, 2, 0)
    assert (out[:4] == (50, 60, 70)).all() and (out[12:] == (50, 60, 70)).all()  # 16x8 content, centred
    assert _is(out[8, 0], (0, 255, 0)) and _is(out[8, 6], (0, 0, 255)) and _is(out[8, 9], (255, 0, 0))
    grey = decode_image(_bands(), opts(resize="pad", channels=1, background=(9, 9, 9)))
    assert grey.shape == (1, 16, 16) and (grey[0, :4] == 9).all()


def test_pad_of_a_transparent_image_is_all_background() -> None:
    data = encode(solid("RGBA", (255, 0, 0, 0), (40, 20)), "PNG")
    assert pixel(decode_image(data, opts(resize="pad", background=(1, 2, 3)))) == (1, 2, 3)


def test_large_jpeg_reduced_while_decoding_matches_a_full_decode() -> None:
    """JPEGs much larger than needed decode at a DCT scale (Image.draft) >= 3x the target."""
    rng = np.random.default_rng(0)
    arr = np.kron(rng.integers(0, 256, (16, 16, 3)), np.ones((32, 32, 1))).astype(np.uint8)  # 512 px
    data = encode(Image.fromarray(arr), "JPEG", quality=95)
    ours = decode_image(data, opts(resolution=16)).astype(int)
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((16, 16), Image.Resampling.LANCZOS))
    assert np.abs(ours - full.transpose(2, 0, 1).astype(int)).mean() < 2.0


def test_same_size_image_is_not_resampled() -> None:
    arr = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    out = decode_image(encode(Image.fromarray(arr), "PNG"), opts(resolution=28, channels=1))
    np.testing.assert_array_equal(out[0], arr)


# --- bad files ----------------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size and holds a few bytes of pixel data: decoding it could only fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty file"),
    (b"hello, I am a text file", "not an image"),
    (encode(solid("RGB", (1, 2, 3)), "TIFF"), "not an image"),  # a format prepare does not read
    (encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)),
            "PNG")[:2000], "truncated or corrupt"),
    (encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)),
            "JPEG")[:600], "corrupt image header"),  # cut inside its header
    (encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)),
            "JPEG")[:3000], "truncated or corrupt"),  # cut in its scan data
])
def test_bad_files(data: bytes, why: str) -> None:
    with pytest.raises(BadImage, match=why):
        decode_image(data, opts())


@pytest.mark.parametrize(("size", "limit"), [
    ((100_000, 100_000), 1_000_000),  # Pillow's own check refuses it in Image.open (> 2x the limit)
    ((1_100, 1_000), 1_000_000),      # between the limit and twice it: refused by the header check
])
def test_over_max_image_pixels_is_never_decoded(monkeypatch, size: tuple[int, int], limit: int) -> None:
    def no_decoding(self):  # noqa: ANN001, ANN202
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(BadImage) as exc:
        decode_image(_png_header(*size), opts(max_image_pixels=limit))
    assert str(exc.value).endswith(f"{size[0] * size[1]:,} pixels, over data.max_image_pixels=1,000,000")
    assert limit != Image.MAX_IMAGE_PIXELS  # Pillow's global limit is restored


def test_under_the_limit_decodes() -> None:
    data = encode(solid("RGB", (5, 5, 5), (40, 25)), "PNG")
    assert pixel(decode_image(data, opts(max_image_pixels=1000))) == (5, 5, 5)
    with pytest.raises(BadImage, match="1,000 pixels, over data.max_image_pixels=999"):
        decode_image(data, opts(max_image_pixels=999))
