"""Mutated real image files: read_image returns an image or raises DecodeError, never anything else."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from agescan import DecodeError, read_image


def _seeds(astronaut) -> list[bytes]:
    small = Image.fromarray(astronaut).resize((96, 96))
    out = []
    for fmt, kw in (("JPEG", {"quality": 90}), ("PNG", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}),
                    ("WEBP", {"quality": 80}), ("JPEG", {"progressive": True})):
        buf = io.BytesIO()
        small.save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(0, 5)
    if kind == 0:  # truncate
        return bytes(b[: rng.integers(0, len(b))])
    if kind == 1:  # flip random bytes, more often in the header
        for _ in range(rng.integers(1, 20)):
            i = int(rng.integers(0, min(len(b), 200) if rng.random() < 0.7 else len(b)))
            b[i] = int(rng.integers(0, 256))
        return bytes(b)
    if kind == 2:  # overwrite a run with zeros or 0xFF
        i = int(rng.integers(0, len(b)))
        b[i:i + int(rng.integers(1, 64))] = bytes([int(rng.choice([0, 255]))]) * 64
        return bytes(b[: len(data)])
    if kind == 3:  # duplicate or delete a chunk
        i, j = sorted(int(x) for x in rng.integers(0, len(b), 2))
        return bytes(b[:i] + b[i:j] * int(rng.integers(0, 3)) + b[j:])
    return bytes(rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8))  # noise


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's corrupt-metadata warnings are expected here
def test_mutated_files_never_crash_the_reader(astronaut):
    rng = np.random.default_rng(1234)
    seeds = _seeds(astronaut)
    decoded = refused = 0
    for _ in range(2000):
        data = _mutate(seeds[int(rng.integers(0, len(seeds)))], rng)
        try:
            img = read_image(data, max_pixels=4_000_000)
        except DecodeError as exc:
            assert str(exc).startswith("<bytes>: ")
            refused += 1
        else:
            assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
            decoded += 1
    assert decoded > 100 and refused > 100  # both paths were exercised
