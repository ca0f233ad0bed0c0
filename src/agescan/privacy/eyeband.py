"""The eye band of Chaves et al.: a black bar over the eyes, as in redacted victim photos.

Band height is 25% of the face-box height and its length 95% of the face-box width, centred on the
midpoint between the eye centres and rotated along the line joining them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from agescan._validation import check_number
from agescan.types import BBox, Landmarks5


def eye_band_polygon(landmarks: Landmarks5, box: BBox, height_frac: float = 0.25,
                     width_frac: float = 0.95) -> np.ndarray:
    """The band's four corners (4, 2) in image coordinates."""
    (lx, ly), (rx, ry) = landmarks.points[0], landmarks.points[1]
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    ang = math.atan2(ry - ly, rx - lx)
    half_w, half_h = width_frac * box.width / 2, height_frac * box.height / 2
    u = np.array([math.cos(ang), math.sin(ang)])
    v = np.array([-math.sin(ang), math.cos(ang)])
    c = np.array([cx, cy])
    return np.stack([c - half_w * u - half_h * v, c + half_w * u - half_h * v,
                     c + half_w * u + half_h * v, c - half_w * u + half_h * v])


def eye_band(image: np.ndarray, landmarks: Landmarks5, box: BBox, *, height_frac: float = 0.25,
             width_frac: float = 0.95, color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Return a copy of ``image`` with an eye band drawn over one face.

    Args:
        image: HxWx3 uint8 RGB (not modified).
        landmarks: the face's five landmarks (eye centres are used).
        box: the face box (its width and height size the band).
        height_frac: band height as a fraction of the box height (paper: 0.25).
        width_frac: band length as a fraction of the box width (paper: 0.95).
        color: fill colour.
    """
    check_number(height_frac, "height_frac", "eye_band", lo=0.0, hi=1.0, lo_open=True)
    check_number(width_frac, "width_frac", "eye_band", lo=0.0, hi=2.0, lo_open=True)
    out = image.copy()
    poly = np.round(eye_band_polygon(landmarks, box, height_frac, width_frac) * 16).astype(np.int32)
    cv2.fillConvexPoly(out, poly, color, lineType=cv2.LINE_8, shift=4)
    return out
