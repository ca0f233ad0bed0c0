"""Perceptual hashes for near-duplicate stacking (the same photo re-encoded, resized or lightly edited)."""

from __future__ import annotations

import cv2
import numpy as np


def dhash(image: np.ndarray) -> str:
    """64-bit difference hash of an RGB uint8 image, as 16 hex digits.

    The image is reduced to 9x8 grey levels (area averaging) and each bit says whether a pixel is brighter
    than its right neighbour: re-encoding and resizing change few bits; different photos about half.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of equal length."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")
