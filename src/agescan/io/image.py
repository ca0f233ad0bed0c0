"""Decode any image input to an RGB uint8 array, or raise :class:`DecodeError` saying why.

Handled: paths, bytes, binary file objects, numpy arrays and PIL images; EXIF orientation; grayscale,
RGBA/LA (alpha dropped: the stored colour is kept, as evidence), palette, CMYK, YCbCr, 16- and 32-bit
integer and float images. Refused with a message naming the file: zero-byte, truncated, corrupt and
non-image files, and images with more than ``max_pixels`` pixels (decompression bombs), checked from
the header before any pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from agescan.errors import DecodeError, InputError, TooManyPixelsError

#: Largest image accepted by default: 100 megapixels (a 12,000 x 8,000 photo fits; bombs do not).
DEFAULT_MAX_PIXELS = 100_000_000

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
          b"\x00\x00\x00\x0cjP  ")


def has_image_signature(head: bytes) -> bool:
    """True when the first bytes of a file (16 are enough) carry the signature of an image format agescan reads."""
    if head.startswith(b"RIFF"):
        return head[8:12] == b"WEBP"
    return any(head.startswith(m) for m in _MAGIC)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image with where it came from: ``source`` label and sha256 of the input bytes."""

    image: np.ndarray  # H x W x 3 uint8 RGB, owned by this object
    source: str
    sha256: str


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        elif mode == "I":
            top = float(arr.max()) if arr.size else 0.0
            arr = arr / 257.0 if top > 255 else arr
        else:  # float images: [0, 1] when they look normalised, else clip
            arr = arr * 255.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else arr
        gray = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)


def allow_pillow(max_pixels: int) -> None:
    """Let Pillow open pictures up to ``max_pixels``: it refuses, on its own, anything over twice its
    ``Image.MAX_IMAGE_PIXELS`` (179 Mpx), so a larger ``--max-pixels`` had no effect. agescan checks the declared
    size against ``max_pixels`` itself before decoding; Pillow's limit is only ever raised here, never lowered."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and max_pixels > limit:
        Image.MAX_IMAGE_PIXELS = int(max_pixels)


def _decode_bytes(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    if not data:
        raise DecodeError(f"{name}: empty file (0 bytes).")
    # No warnings.catch_warnings() here: it swaps the process-wide filters and is not thread-safe, and
    # decoding runs in worker threads. Pillow's warnings (bomb-sized images, corrupt metadata) go through
    # the caller's filters; the agescan CLI, an application, silences them.
    allow_pillow(max_pixels)
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        if w <= 0 or h <= 0:
            raise DecodeError(f"{name}: image declares an empty size {w}x{h}.")
        if w * h > max_pixels:
            raise TooManyPixelsError(f"{name}: image declares {w}x{h} = {w * h:,} pixels, more than the limit of "
                              f"{max_pixels:,} (decompression-bomb guard). Raise max_pixels (--max-pixels) "
                              f"if the file is trusted.")
        im.load()
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # malformed EXIF: keep the stored orientation rather than lose the image
            pass
        return _to_rgb_array(im)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise TooManyPixelsError(f"{name}: {exc} (decompression-bomb guard).") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(f"{name}: not a recognised image format ({len(data):,} bytes).") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError, KeyError,
            ZeroDivisionError, RuntimeError, struct.error) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = f"truncated or incomplete image data ({reason})"
        raise DecodeError(f"{name}: cannot decode image: {reason}.") from exc


def _from_array(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        raise InputError(f"The 'source' parameter of read_image must be a uint8 array when it is an array "
                         f"(RGB order). Got dtype {a.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8).")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4) and a.shape[0] > 0 and a.shape[1] > 0:
        if a.shape[2] == 1:
            return np.repeat(a, 3, axis=2)
        return np.ascontiguousarray(a[:, :, :3]).copy()
    raise InputError(f"The 'source' parameter of read_image must be an HxW, HxWx3 or HxWx4 array. Got shape {a.shape}.")


def decode_bytes(data: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode encoded image bytes, labelling the result and any error with ``name``."""
    return LoadedImage(_decode_bytes(data, name, max_pixels), name, hashlib.sha256(data).hexdigest())


def load_image(source: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``source`` and return the image with its provenance (label and sha256 of the bytes).

    Args:
        source: a path (str or os.PathLike), bytes, a binary file object, an HxW[x3|x4] uint8 RGB
            array, or a PIL image.
        max_pixels: refuse images whose header declares more pixels than this.

    Raises:
        DecodeError: the file is missing, unreadable, empty, truncated, corrupt, not an image, or too large.
        InputError: ``source`` is of an unsupported type or shape.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            data = Path(name).read_bytes()
        except FileNotFoundError as exc:
            raise DecodeError(f"{name}: no such file.") from exc
        except IsADirectoryError as exc:
            raise DecodeError(f"{name}: is a folder, not an image file.") from exc
        except PermissionError as exc:
            raise DecodeError(f"{name}: permission denied.") from exc
        except OSError as exc:
            raise DecodeError(f"{name}: cannot read file ({exc.strerror or exc}).") from exc
        return decode_bytes(data, name, max_pixels=max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), "<bytes>", max_pixels=max_pixels)
    if isinstance(source, np.ndarray):
        return LoadedImage(_from_array(source), "<array>", "")
    if isinstance(source, Image.Image):
        w, h = source.size
        if w * h > max_pixels:
            raise TooManyPixelsError(f"<PIL image>: {w}x{h} pixels exceeds the limit of {max_pixels:,}.")
        try:  # as for a path: a photo's EXIF orientation applied (to a copy: the caller's image is left as it is)
            upright = ImageOps.exif_transpose(source)
        except Exception:  # noqa: BLE001 - malformed EXIF: keep the stored orientation rather than lose the image
            upright = source
        return LoadedImage(_to_rgb_array(upright), "<PIL image>", "")
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<stream>"))
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise InputError("The 'source' parameter of read_image must be a binary file object (opened with 'rb').")
        return decode_bytes(bytes(data), name, max_pixels=max_pixels)
    raise InputError(f"The 'source' parameter of read_image must be a path, bytes, a binary file object, a uint8 "
                     f"numpy array or a PIL image. Got {type(source).__name__}.")


def read_image(source: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any image input to a new H x W x 3 uint8 RGB array (EXIF orientation applied).

    Example:
        >>> from agescan import read_image
        >>> read_image(np.zeros((4, 5), np.uint8)).shape
        (4, 5, 3)
    """
    return load_image(source, max_pixels=max_pixels).image
