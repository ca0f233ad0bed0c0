"""read_image / load_image on real files and on every kind of bad input, generated here."""

from __future__ import annotations

import hashlib
import io
import struct

import numpy as np
import pytest
from PIL import Image

from agescan import DecodeError, InputError, read_image
from agescan.io import load_image


def _jpeg_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


@pytest.fixture()
def rgb() -> np.ndarray:
    y, x = np.mgrid[0:60, 0:80]
    return np.stack([x * 3, y * 4, (x + y) * 2], axis=2).astype(np.uint8)


def test_real_jpeg_path_with_spaces_and_non_ascii(tmp_path, rgb):
    p = tmp_path / "Zoë photo (copy) 写真.jpg"
    p.write_bytes(_jpeg_bytes(rgb))
    loaded = load_image(p)
    assert loaded.image.shape == (60, 80, 3) and loaded.image.dtype == np.uint8
    assert loaded.source == str(p)
    assert loaded.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert np.abs(loaded.image.astype(int) - rgb).mean() < 3


def test_png_roundtrip_exact(tmp_path, rgb):
    p = tmp_path / "x.png"
    Image.fromarray(rgb).save(p)
    assert np.array_equal(read_image(p), rgb)
    assert np.array_equal(read_image(p.read_bytes()), rgb)
    with open(p, "rb") as fh:
        assert np.array_equal(read_image(fh), rgb)
    assert np.array_equal(read_image(Image.open(p)), rgb)


def test_exif_orientation_is_applied(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = tmp_path / "rotated.jpg"
    p.write_bytes(_jpeg_bytes(rgb, exif=exif.tobytes()))
    out = read_image(p)
    assert out.shape == (80, 60, 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(out.astype(int) - expected).mean() < 3
    # the same photo opened by the caller with PIL is read the same way (it was read as stored), and the caller's
    # image keeps its orientation tag and size
    with Image.open(p) as im:
        from_pil = read_image(im)
        assert im.size == (80, 60) and im.getexif().get(0x0112) == 6
    assert np.array_equal(from_pil, out)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1", "YCbCr"])
def test_modes_become_rgb(tmp_path, rgb, mode):
    im = Image.fromarray(rgb).convert(mode)
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG"}.get(mode, "PNG")
    if mode == "LA":
        fmt = "PNG"
    p = tmp_path / f"img.{fmt.lower()}"
    im.save(p, format=fmt)
    out = read_image(p)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    if mode in ("RGBA", "CMYK", "YCbCr"):
        assert np.abs(out.astype(int) - rgb).mean() < 6


def test_palette_with_transparency(tmp_path, rgb):
    im = Image.fromarray(rgb).convert("P")
    p = tmp_path / "t.png"
    im.save(p, transparency=0)
    assert read_image(p).shape == (60, 80, 3)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    arr = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    out = read_image(p)
    assert out.shape == (64, 64, 3)
    assert out.max() > 200 and out.min() == 0  # the full 16-bit range maps onto 0..255
    assert np.allclose(out[..., 0], np.round(arr / 257.0), atol=1)


def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(DecodeError, match=r"empty\.jpg: empty file"):
        read_image(p)


def test_text_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not an image\n" * 10)
    with pytest.raises(DecodeError, match=r"notes\.jpg: not a recognised image format"):
        read_image(p)


def test_truncated_jpeg(tmp_path, rgb):
    data = _jpeg_bytes(np.tile(rgb, (4, 4, 1)))
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match=r"cut\.jpg: .*truncated"):
        read_image(p)


def test_corrupt_png_crc(tmp_path, rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[40:60] = b"\x00" * 20
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=r"bad\.png"):
        read_image(p)


def _png_header(width: int, height: int) -> bytes:
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 4096)  # a real bomb's rows would inflate to gigabytes
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
            + struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat) & 0xFFFFFFFF))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, before our refusal
def test_decompression_bomb_refused_from_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header(12_000, 10_000))
    with pytest.raises(DecodeError, match=r"bomb\.png: image declares 12000x10000.*limit of 100,000,000"):
        read_image(p)
    p.write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(DecodeError, match=r"bomb\.png: .*decompression-bomb guard"):
        read_image(p)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_max_pixels_above_pillows_own_limit_is_honoured(tmp_path, monkeypatch):
    """Pillow refuses on its own anything over 2 x Image.MAX_IMAGE_PIXELS (179 Mpx): a --max-pixels above that had
    no effect, and the message told the user to raise --max-pixels. The header-only 200 Mpx PNG now gets past the
    size checks to the decoder, which finds its data missing."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    p = tmp_path / "big.png"
    p.write_bytes(_png_header(20_000, 10_000))
    with pytest.raises(DecodeError, match="limit of 100,000,000"):
        read_image(p)
    with pytest.raises(DecodeError, match="cannot decode image") as err:
        read_image(p, max_pixels=300_000_000)
    assert "limit" not in str(err.value) and "bomb" not in str(err.value)


def test_max_pixels_is_configurable(tmp_path, rgb):
    p = tmp_path / "small.png"
    Image.fromarray(rgb).save(p)
    with pytest.raises(DecodeError, match="more than the limit of 1,000"):
        read_image(p, max_pixels=1000)
    assert read_image(p, max_pixels=60 * 80).shape == (60, 80, 3)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DecodeError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(DecodeError, match="is a folder"):
        read_image(tmp_path)


def test_arrays_are_copied_not_shared(rgb):
    out = read_image(rgb)
    out[:] = 0
    assert rgb.max() > 0
    assert read_image(rgb[:, :, 0]).shape == (60, 80, 3)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.array_equal(read_image(rgba), rgb)


def test_bad_array_and_type_raise_input_error(rgb):
    with pytest.raises(InputError, match="uint8"):
        read_image(rgb.astype(np.float32))
    with pytest.raises(InputError, match="HxW"):
        read_image(np.zeros((2, 3, 5), np.uint8))
    with pytest.raises(InputError, match="Got int"):
        read_image(42)
