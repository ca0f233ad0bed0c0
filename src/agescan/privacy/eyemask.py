"""The eye mask of Wang et al. (privacy-preserving age estimation for content rating): the landmark eye region
(:func:`~agescan.privacy.regions.eye_region_polygon`, expanded by 10% so the brows and the nasal bridge are covered)
filled with black. Distinct from the eye band, which is sized from the face box."""

from __future__ import annotations

import cv2
import numpy as np

from agescan._validation import check_number
from agescan.privacy.regions import eye_region_polygon
from agescan.types import BBox, Landmarks5


def eye_mask(image: np.ndarray, landmarks: Landmarks5, box: BBox | None = None, *, expand: float = 0.10,
             color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Return a copy of ``image`` with one face's eye region filled with ``color``.

    Args:
        image: HxWx3 uint8 RGB (not modified).
        landmarks: the face's five landmarks (eye centres and nose tip place the region).
        box: unused (the region comes from the landmarks); accepted so every transform takes the same arguments.
        expand: growth of the region (the paper's 0.10).
        color: fill colour (the paper's black).
    """
    check_number(expand, "expand", "eye_mask", lo=0.0, hi=2.0)
    out = image.copy()
    poly = np.round(eye_region_polygon(landmarks, expand) * 16).astype(np.int32)
    cv2.fillConvexPoly(out, poly, color, lineType=cv2.LINE_8, shift=4)
    return out
