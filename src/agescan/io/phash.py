"""PDQ perceptual hashes and the near-duplicate rule: which pictures the report *groups* (never hides).

PDQ is the 256-bit perceptual hash of Meta's ThreatExchange, the one industry hash-sharing programmes exchange
(reference code BSD-licensed; the ``pdqhash`` binding MIT). It comes with a quality score (0-100): a flat or
featureless picture scores low and its hash says little, so such pictures are never grouped. Two pictures are
near-duplicates when their hashes, or one's hash and the other's mirror-image hash, differ in at most
:data:`NEAR_DUPLICATE_DISTANCE` of 256 bits; the distance and the quality floor were chosen on UTKFace's val
split and measured on its test split and on full scenes (``benchmarks/near_duplicates.py``,
``docs/benchmarks.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from agescan.io.resize import downscale

#: Hashes (or hash and mirror hash) at most this many bits apart are near-duplicates: the largest distance at
#: which at most 1 in 100,000 pairs of distinct photos grouped on the val data (UTKFace val faces and 2,000 full
#: scenes; docs/benchmarks.md, where the test split's numbers are). PDQ's published match threshold is 31.
NEAR_DUPLICATE_DISTANCE = 44
#: PDQ's recommended floor: a hash of quality below this describes a near-flat picture and matches at random.
MIN_QUALITY = 50
#: Pictures larger than this on either side are area-averaged to this square first (PDQ reduces to 64x64 whatever
#: the aspect). Meta's reference prescales to 512; 128 costs 1.2 ms instead of 12 on a 1280x960 photo (a scan's
#: hash is paid on every file) and moved hashes by a median of 6 bits of 256; the distance and quality floor were
#: re-checked with it (benchmarks/near_duplicates.py, docs/benchmarks.md).
_HASH_SIDE = 128


@dataclass(frozen=True, slots=True)
class PDQHash:
    """The PDQ hash of a picture and of its mirror image (64 hex digits each) and the hash's quality (0-100)."""

    hash: str
    mirror: str
    quality: int


def pdq(image: np.ndarray) -> PDQHash:
    """PDQ hash of an RGB uint8 image (H x W x 3), with the hash of its left-right mirror image.

    Example:
        >>> from skimage import data                                           # doctest: +SKIP
        >>> h = pdq(data.astronaut()); len(h.hash), h.quality                  # doctest: +SKIP
        (64, 100)
    """
    import pdqhash

    h, w = image.shape[:2]
    if max(h, w) > _HASH_SIDE:
        image = downscale(image, _HASH_SIDE, _HASH_SIDE)
    hashes, quality = pdqhash.compute_dihedral(np.ascontiguousarray(image))
    # compute_dihedral's order: original, rot90, rot180, rot270, flipX, flipY (left-right mirror), ...
    return PDQHash(_hex(hashes[0]), _hex(hashes[5]), int(quality))


def _hex(bits: np.ndarray) -> str:
    """PDQ's usual text form: 64 hex digits, most significant bit first (the binding's bit order)."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def _signs(hashes: Sequence[str]) -> np.ndarray:
    """N x 256 float32 of +1/-1 per bit: the distance of two rows is (256 - their dot product) / 2."""
    raw = np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(len(hashes), 32)
    return np.unpackbits(raw, axis=1).astype(np.float32) * 2 - 1


def distance(a: str, b: str) -> int:
    """Bits that differ between two hex hashes of equal length."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def near_duplicate_groups(hashes: Sequence[PDQHash | None], max_distance: int = NEAR_DUPLICATE_DISTANCE,
                          min_quality: int = MIN_QUALITY, chunk: int = 1024) -> list[int]:
    """Group labels: pictures linked by a chain of near-duplicate pairs share a label.

    Every picture gets a label (its own when nothing matches, or when its hash is missing (``None``) or of
    quality below ``min_quality``); the label is the index of the group's first member, so callers keep their
    own order. Pairs are compared all against all (matrix products in chunks of ``chunk`` rows): fine for the
    few thousand pictures a report lists and for the benchmark's tens of thousands.
    """
    n = len(hashes)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    usable = [i for i, h in enumerate(hashes) if h is not None and h.quality >= min_quality]
    if len(usable) > 1:
        plain = _signs([hashes[i].hash for i in usable])
        mirror = _signs([hashes[i].mirror for i in usable])
        # dot >= 256 - 2 * max_distance  <=>  distance <= max_distance
        floor = 256 - 2 * max_distance
        for start in range(0, len(usable), chunk):
            rows, cols = slice(start, start + chunk), slice(start, None)  # each pair once: columns from start on
            close = (plain[rows] @ plain[cols].T >= floor) | (plain[rows] @ mirror[cols].T >= floor) \
                | (mirror[rows] @ plain[cols].T >= floor)
            for a, b in zip(*np.nonzero(np.triu(close, k=1))):
                ri, rj = root(usable[start + a]), root(usable[start + b])
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    return [root(i) for i in range(n)]
