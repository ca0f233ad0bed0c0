"""Keyed pixel permutation (Wang et al.'s "encryption", with a modern keyed PRF instead of DES).

Every pixel of the image (all its channels together) moves to a new position given by a permutation derived from a
secret key: HMAC-SHA256(key, "agescan keyed-permutation v1" + image size) gives a 256-bit key for this image size,
SHAKE-256 (SHA-3's extendable output) expands it into one 64-bit sort key per pixel, and the pixels are ordered by
their sort keys. Both primitives are Python's ``hashlib``/``hmac`` (OpenSSL); no new dependency.

What it protects and what it does not (docs/privacy.md says more):

- Without the key the picture is noise to a person and to a face detector; with the key it is restored exactly
  (byte for byte) as long as it was stored losslessly (PNG, never JPEG).
- It is a permutation, not encryption: the colour histogram, the image size and therefore the mean colour, the
  share of skin tones, and the number of pixels of each colour stay. The same key and image size always give the
  same permutation, so two images permuted with one key can be compared pixel for pixel (equal images stay equal),
  and anyone holding one original and its permuted image learns the permutation for every image of that size. Use a
  key per image, or per session, when that matters.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from agescan.errors import ConfigError, InputError

#: Keys shorter than this are refused (128 bits).
MIN_KEY_BYTES = 16
_CONTEXT = b"agescan keyed-permutation v1"


def _check_key(key: bytes | None, owner: str) -> bytes:
    if key is None:
        raise ConfigError(f"{owner} needs a secret key. Pass key=... (at least {MIN_KEY_BYTES} random bytes), or on "
                          "the command line --key-file FILE (create one with `agescan anonymize --new-key FILE`).")
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise InputError(f"The 'key' parameter of {owner} must be at least {MIN_KEY_BYTES} bytes. "
                         f"Got {len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__}.")
    return bytes(key)


def pixel_permutation(key: bytes, height: int, width: int) -> np.ndarray:
    """The permutation (int64, length height*width) of flat pixel indices that ``key`` gives for an image size:
    output pixel ``i`` is input pixel ``perm[i]``."""
    key = _check_key(key, "pixel_permutation")
    n = int(height) * int(width)
    subkey = hmac.new(key, _CONTEXT + f" {int(height)}x{int(width)}".encode(), hashlib.sha256).digest()
    stream = hashlib.shake_256(subkey).digest(8 * n)
    sort_keys = np.frombuffer(stream, dtype="<u8")
    return np.argsort(sort_keys, kind="stable")


def _pixels(image: np.ndarray, owner: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise InputError(f"The 'image' parameter of {owner} must be an HxW or HxWxC array. "
                         f"Got {getattr(image, 'shape', type(image).__name__)}.")
    return image


def permute_pixels(image: np.ndarray, key: bytes) -> np.ndarray:
    """A new image whose pixels are ``image``'s, moved by the key's permutation (reversed by :func:`unpermute_pixels`)."""
    image = _pixels(image, "permute_pixels")
    h, w = image.shape[:2]
    perm = pixel_permutation(_check_key(key, "permute_pixels"), h, w)
    flat = image.reshape(h * w, -1)
    return flat[perm].reshape(image.shape)


def unpermute_pixels(image: np.ndarray, key: bytes) -> np.ndarray:
    """A new image with :func:`permute_pixels` undone (the same key and image size)."""
    image = _pixels(image, "unpermute_pixels")
    h, w = image.shape[:2]
    perm = pixel_permutation(_check_key(key, "unpermute_pixels"), h, w)
    flat = image.reshape(h * w, -1)
    out = np.empty_like(flat)
    out[perm] = flat
    return out.reshape(image.shape)


#: The PNG text chunk that carries :func:`permutation_tag` in pictures ``agescan anonymize`` permutes.
TAG_CHUNK = "agescan-keyed-permutation"
_TAG_CONTEXT = b"agescan keyed-permutation tag v1"


def permutation_tag(image: np.ndarray, key: bytes) -> str:
    """HMAC-SHA256 under ``key`` of a permuted picture's size and pixels (hex): written beside the picture, it lets
    the holder of the key check, before restoring, that the key is the one that permuted it and that no pixel changed
    since; without the key it tells nothing about the picture."""
    image = _pixels(image, "permutation_tag")
    shape = "x".join(str(int(d)) for d in image.shape)
    mac = hmac.new(_check_key(key, "permutation_tag"), _TAG_CONTEXT + f" {shape} {image.dtype.str} ".encode(),
                   hashlib.sha256)
    mac.update(np.ascontiguousarray(image).tobytes())
    return mac.hexdigest()
