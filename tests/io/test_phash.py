"""PDQ hashes and the near-duplicate rule: copies of one photo are grouped, different people's faces are not."""

from __future__ import annotations

import io
from itertools import combinations

import numpy as np
from PIL import Image

from agescan import read_image
from agescan.io.phash import MIN_QUALITY, NEAR_DUPLICATE_DISTANCE, PDQHash, distance, near_duplicate_groups, pdq
from tests.conftest import lookalike_paths


def _jpeg(image: np.ndarray, quality: int, size: tuple[int, int] | None = None) -> np.ndarray:
    img = Image.fromarray(image)
    buf = io.BytesIO()
    (img.resize(size) if size else img).save(buf, format="JPEG", quality=quality)
    return read_image(buf.getvalue())


def test_pdq_is_stable_for_copies_and_far_for_other_photos(astronaut):
    from skimage import data

    h = pdq(astronaut)
    assert len(h.hash) == len(h.mirror) == 64 and h.quality >= MIN_QUALITY and h == pdq(astronaut.copy())
    assert distance(h.hash, pdq(_jpeg(astronaut, 60)).hash) <= NEAR_DUPLICATE_DISTANCE  # re-encoded
    assert distance(h.hash, pdq(_jpeg(astronaut, 75, (300, 300))).hash) <= NEAR_DUPLICATE_DISTANCE  # resized
    assert distance(h.hash, pdq(_jpeg(astronaut, 90, (1024, 1024))).hash) <= NEAR_DUPLICATE_DISTANCE  # enlarged
    mirrored = pdq(np.ascontiguousarray(astronaut[:, ::-1]))
    assert distance(h.hash, mirrored.hash) > 90  # as a picture, a mirror image is another one...
    assert distance(h.mirror, mirrored.hash) <= NEAR_DUPLICATE_DISTANCE  # ...which the mirror hash matches
    assert distance(h.hash, pdq(data.coffee()).hash) > 90
    assert pdq(np.full((90, 120, 3), 128, np.uint8)).quality < MIN_QUALITY  # a flat picture says nothing


def test_groups_copies_and_mirrors_never_different_peoples_faces(astronaut, utkface_faces):
    faces = [read_image(p) for p in lookalike_paths()] + [read_image(p) for p, _ in utkface_faces]
    pictures = faces + [astronaut, _jpeg(astronaut, 60), _jpeg(astronaut, 75, (256, 256)),
                        np.ascontiguousarray(astronaut[:, ::-1])]
    hashes = [pdq(p) for p in pictures]
    labels = near_duplicate_groups(hashes)
    n = len(faces)
    assert labels[:n] == list(range(n)), "16 different people's faces: each its own group"
    assert labels[n:] == [n] * 4, "the astronaut, re-encoded, resized and mirrored: one group"
    assert min(distance(hashes[i].hash, hashes[j].hash) for i, j in combinations(range(n), 2)) \
        > NEAR_DUPLICATE_DISTANCE + 16  # with room to spare


def test_groups_are_chains_and_skip_missing_or_flat_hashes():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, 256)

    def h(flip: int, quality: int = 100) -> PDQHash:
        b = bits.copy()
        b[:flip] ^= 1
        text = np.packbits(b.astype(np.uint8)).tobytes().hex()
        return PDQHash(text, text, quality)

    d = NEAR_DUPLICATE_DISTANCE
    # 0 ~ 1 ~ 2 by a chain (0 and 2 are 2d apart); 3 has no hash; 4 is a copy of 0 but too flat to trust
    assert near_duplicate_groups([h(0), h(d), h(2 * d), None, h(0, MIN_QUALITY - 1)]) == [0, 0, 0, 3, 4]
    assert near_duplicate_groups([h(0), h(d + 1)]) == [0, 1]
    assert near_duplicate_groups([]) == []
