"""Where a transform goes on a face: the landmark eye region and the face-size scale.

Both are computed from a face's five landmarks and its box only, so every transform is placed the same way by the
CLI, the service, evaluation and training.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from agescan.types import BBox, Landmarks5

#: The face size the paper's parameters refer to (face-box width in pixels). The paper (Adience, VGG16) does not
#: state its image size; VGG16 takes 224-pixel crops of aligned faces, so a 224-pixel face is the reference: there
#: the blur kernel is the paper's 25x25 and the mosaic cells its 10x10, and both scale with the face.
REFERENCE_FACE = 224.0

#: The eye region in the eye-line frame, in units of the eye distance d (x along the eyes, y down the face,
#: origin between the eyes): from the outer eye corners and brow tails (|x| <= 0.8 d), from the brows (y = -0.4 d)
#: to halfway down to the nose tip (the nasal bridge). The paper draws it from 68 landmarks (eye and brow points)
#: and expands it by 10%; five landmarks give only the eye centres and the nose tip, so its extent is taken from
#: average face proportions.
EYE_REGION_HALF_WIDTH = 0.8
EYE_REGION_TOP = -0.4
EYE_REGION_NOSE_SHARE = 0.5
#: Nose-tip depth below the eye line (x d) used when the landmarks put the nose above or on the eye line.
TYPICAL_NOSE_DEPTH = 0.57


def face_scale(box: BBox) -> float:
    """The face's size relative to :data:`REFERENCE_FACE` (the box width; at least a tiny positive value)."""
    return max(box.width, 1.0) / REFERENCE_FACE


def eye_region_polygon(landmarks: Landmarks5, expand: float = 0.10) -> np.ndarray:
    """The landmark eye region's four corners (4, 2) in image coordinates, turned along the eye line.

    Args:
        landmarks: the face's five landmarks (eye centres and nose tip are used).
        expand: growth of the region's width and height (the paper's 10%), shared equally by opposite sides.
    """
    pts = np.asarray(landmarks.points, dtype=np.float64)
    left, right, nose = pts[0], pts[1], pts[2]
    d = float(np.hypot(*(right - left)))
    if d < 1e-6:  # both eyes on one point: fall back to an upright frame sized from the nose
        d = max(float(np.hypot(*(nose - left))), 1.0)
        u = np.array([1.0, 0.0])
    else:
        u = (right - left) / d
    v = np.array([-u[1], u[0]])  # down the face in image coordinates
    mid = (left + right) / 2
    depth = float((nose - mid) @ v) / d
    if depth < 0.2:
        depth = TYPICAL_NOSE_DEPTH
    top, bottom = EYE_REGION_TOP, EYE_REGION_NOSE_SHARE * depth
    half_w = EYE_REGION_HALF_WIDTH * (1 + expand) * d
    half_h = (bottom - top) / 2 * (1 + expand) * d
    c = mid + (top + bottom) / 2 * d * v
    return np.stack([c - half_w * u - half_h * v, c + half_w * u - half_h * v,
                     c + half_w * u + half_h * v, c - half_w * u + half_h * v])


def polygon_mask(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    """A new HxW bool mask of the pixels inside a convex polygon (1/16-pixel precision)."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(np.asarray(polygon) * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def box_pixels(box: BBox, shape: tuple[int, ...], grow: float = 0.0) -> tuple[int, int, int, int]:
    """Integer pixel bounds (x0, y0, x1, y1), end-exclusive and clipped to the image, of ``box`` grown by ``grow`` of
    its width and height on every side."""
    h, w = shape[:2]
    gx, gy = grow * box.width, grow * box.height
    x0, y0 = max(0, math.floor(box.x1 - gx)), max(0, math.floor(box.y1 - gy))
    x1, y1 = min(w, math.ceil(box.x2 + gx)), min(h, math.ceil(box.y2 + gy))
    return x0, y0, max(x0, x1), max(y0, y1)
