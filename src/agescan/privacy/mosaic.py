"""The eye mosaic: the eye band's region pixelated instead of blacked out.

The band's rotated rectangle (:func:`~agescan.privacy.eyeband.eye_band_polygon`) is covered with square blocks of
``block`` pixels (by default a quarter of the band's height), laid on a grid from the band's bounding box; every
pixel inside the band takes the mean colour of its block. Coarse shading survives (where the eyes are, skin tone),
detail does not. The web page (``agescan serve``) draws the same mosaic in the browser.
"""

from __future__ import annotations

import cv2
import numpy as np

from agescan._validation import check_number
from agescan.privacy.eyeband import eye_band_polygon
from agescan.types import BBox, Landmarks5


def eye_mosaic(image: np.ndarray, landmarks: Landmarks5, box: BBox, *, height_frac: float = 0.25,
               width_frac: float = 0.95, blocks: int = 4) -> np.ndarray:
    """Return a copy of ``image`` with the eye band's region of one face pixelated.

    Args:
        image: HxWx3 uint8 RGB (not modified).
        landmarks, box: the face (eye centres place the band, the box sizes it).
        height_frac, width_frac: the band's size, as :func:`~agescan.privacy.eye_band`.
        blocks: blocks across the band's height (block side = band height / blocks, at least 2 pixels).
    """
    check_number(blocks, "blocks", "eye_mosaic", lo=1, hi=64, integer=True)
    check_number(height_frac, "height_frac", "eye_mosaic", lo=0.0, hi=1.0, lo_open=True)
    check_number(width_frac, "width_frac", "eye_mosaic", lo=0.0, hi=2.0, lo_open=True)
    out = image.copy()
    poly = eye_band_polygon(landmarks, box, height_frac, width_frac)
    h, w = image.shape[:2]
    block = max(2, int(round(height_frac * box.height / blocks)))
    x0, y0 = (max(0, int(np.floor(v))) for v in poly.min(0))
    x1, y1 = min(w, int(np.ceil(poly[:, 0].max())) + 1), min(h, int(np.ceil(poly[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return out
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    region = image[y0:y1, x0:x1].astype(np.float64)
    rh, rw = region.shape[:2]
    nby, nbx = -(-rh // block), -(-rw // block)
    padded = np.zeros((nby * block, nbx * block, 3))
    count = np.zeros((nby * block, nbx * block, 1))
    padded[:rh, :rw], count[:rh, :rw] = region, 1.0
    sums = padded.reshape(nby, block, nbx, block, 3).sum((1, 3))
    means = sums / np.maximum(count.reshape(nby, block, nbx, block, 1).sum((1, 3)), 1.0)
    tiled = np.repeat(np.repeat(np.round(means).astype(np.uint8), block, 0), block, 1)[:rh, :rw]
    inside = mask[y0:y1, x0:x1].astype(bool)
    out[y0:y1, x0:x1][inside] = tiled[inside]
    return out
