"""Perceptual hash: stable under re-encoding and resizing, far apart for different photos."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from agescan import read_image
from agescan.io.phash import dhash, hamming


def test_dhash_near_duplicates_and_distinct_photos(astronaut):
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(astronaut).resize((200, 200)).save(buf, format="JPEG", quality=70)
    copy = read_image(buf.getvalue())
    h = dhash(astronaut)
    assert len(h) == 16 and h == dhash(astronaut.copy())
    assert hamming(h, dhash(copy)) <= 6
    assert hamming(h, dhash(data.coffee())) > 15
    assert hamming(h, dhash(np.ascontiguousarray(astronaut[:, ::-1]))) > 15  # a mirror image is another picture
