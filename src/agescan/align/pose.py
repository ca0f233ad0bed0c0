"""Pose-aware framing: estimate yaw and roll from the five landmarks, and frame a turned face from its box.

The five-point similarity warp (:func:`agescan.align.align_face`) forces every face onto the frontal template. On a
face turned past about :data:`PROFILE_YAW` degrees the landmarks of the far side are guesses bunched up on one side,
and the warp then zooms onto a cheek and background. Such a face is framed instead from what stays reliable when a
head turns (:func:`box_frame`): horizontally centred on the detector's box, upright along the eye-to-mouth axis,
scaled by the eye-to-mouth distance (a turn about the vertical axis leaves vertical distances alone), placed as the
template places a frontal face, with the card's margin. :func:`frame_face` chooses between the two.

Yaw is read from how far the nose lies off the face's midline, between the eyes and the mouth corners, relative to
half the distance between the eyes, both measured along the eye line (roll removed): for a head turned by ``yaw``
the nose tip, :data:`NOSE_DEPTH` half-eye-distances in front of the eyes, moves ``NOSE_DEPTH x sin(yaw)`` while the
eyes close in by ``cos(yaw)``, so ``yaw = atan(offset / (NOSE_DEPTH x half eye distance))``. It is an estimate
from a detector's landmarks (no 3-D fit): good enough to tell frontal from strongly turned, not a measurement.
Sign: positive when the nose points to the image's right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agescan.errors import InputError
from agescan.types import FRAMINGS, BBox, FaceCrop, Landmarks5

#: Depth of the nose tip in front of the eyes, in half inter-ocular distances (the generic 3-D face model of
#: head-pose tutorials: pupils about 160 units off the midline, 135 behind the nose tip).
NOSE_DEPTH = 0.85
#: The default detector's box on frontal faces, in units of the template square (UTKFace val, median of 300 faces:
#: width 0.850, height 1.144, centre (0.513, 0.379); MTCNN 0.846, 1.118, (0.489, 0.392); YuNet-WIDER 0.868, 1.116,
#: (0.515, 0.412)): how :func:`box_frame` turns a box into the template's framing. Horizontally the box centre is
#: taken as the face's centre.
BOX_WIDTH = 0.850
BOX_HEIGHT = 1.144
BOX_CENTRE = (0.5, 0.379)
#: Faces turned further than this (|yaw|, degrees) are framed from their box instead of warped onto the frontal
#: template. Chosen on validation data with the default model (``benchmarks/pose_framing.py``; docs/benchmarks.md,
#: "In the wild"): the smallest threshold that costs nothing on UTKFace val (MAE 0-25) or fairface270 (9-bin
#: accuracy, children under 18); lower ones hand the box framing near-frontal faces and lose on both. No UTKFace
#: val face is turned this far; 7.6% of fairface270's faces are.
PROFILE_YAW = 50.0


@dataclass(frozen=True, slots=True)
class Pose:
    """Head pose estimated from five landmarks, in degrees: ``yaw`` (turn about the vertical axis, positive when the
    nose points to the image's right) and ``roll`` (in-plane tilt of the eye line, positive clockwise in the
    image)."""

    yaw: float
    roll: float


def _points(landmarks: Landmarks5 | np.ndarray) -> np.ndarray:
    pts = landmarks.as_array() if isinstance(landmarks, Landmarks5) else np.asarray(landmarks)
    pts = np.asarray(pts, dtype=np.float64)
    if pts.shape != (5, 2) or not np.all(np.isfinite(pts)):
        raise InputError(f"The 'landmarks' parameter must be 5 finite (x, y) points. Got shape {pts.shape}.")
    return pts


def estimate_pose(landmarks: Landmarks5 | np.ndarray) -> Pose:
    """Yaw and roll of a face from its five landmarks (see the module docstring for the model and its limits).

    Example:
        >>> estimate_pose(np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]])).yaw
        0.0
    """
    p = _points(landmarks)
    le, re = p[0], p[1]
    roll = math.degrees(math.atan2(re[1] - le[1], re[0] - le[0]))
    c, s = math.cos(math.radians(-roll)), math.sin(math.radians(-roll))
    q = (p - (le + re) / 2) @ np.array([[c, -s], [s, c]]).T  # eye line horizontal
    half_eyes = (q[1, 0] - q[0, 0]) / 2
    midline = ((q[0, 0] + q[1, 0]) / 2 + (q[3, 0] + q[4, 0]) / 2) / 2
    offset = q[2, 0] - midline
    yaw = math.degrees(math.atan2(offset / NOSE_DEPTH, max(half_eyes, 1e-6)))
    return Pose(yaw=round(yaw, 2) + 0.0, roll=round(roll, 2) + 0.0)


def box_affine(landmarks: Landmarks5 | np.ndarray, box: BBox, recipe) -> np.ndarray:
    """The original -> crop affine of :func:`box_frame` (2x3 float64).

    The face is turned upright along its eye-to-mouth axis (a turn about the vertical axis leaves it alone); the
    template square's side is the box height (corrected for that roll) over :data:`BOX_HEIGHT`, and the box centre
    goes where :data:`BOX_CENTRE` puts it in the template square; ``recipe``'s margin and size then apply as for
    the five-point warp. For a frontal face this gives nearly the warp's crop.
    """
    p = _points(landmarks)
    axis = (p[3] + p[4]) / 2 - (p[0] + p[1]) / 2
    length = float(np.hypot(*axis))
    if length < 1e-6 or box.height <= 0:
        raise InputError("Landmarks are degenerate (eyes and mouth coincide) or the box is empty; cannot frame "
                         "this face.")
    down = axis / length  # the face's "down" direction in the image
    right = np.array([down[1], -down[0]])
    cos, sin = abs(float(down[1])), abs(float(down[0]))
    aspect = BOX_WIDTH / BOX_HEIGHT  # an upright face box's width over height
    face_height = box.height / (cos + aspect * sin)  # the height of the face's own (unrolled) box
    side = face_height / BOX_HEIGHT  # the template square's side in image pixels
    centre = np.array([(box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2])
    k = recipe.size / (1.0 + 2.0 * recipe.margin)
    scale = k / side
    rot = np.stack([right, down])  # rows: image -> (u, v) directions of the template square
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = (np.asarray(BOX_CENTRE) + recipe.margin) * k - scale * rot @ centre
    return m


def box_frame(image: np.ndarray, landmarks: Landmarks5 | np.ndarray, box: BBox, recipe) -> FaceCrop:
    """Crop a (turned) face centred on its box, as :func:`box_affine` says; the input image is not modified."""
    from agescan.align import warp

    m = box_affine(landmarks, box, recipe)
    return FaceCrop(image=np.ascontiguousarray(warp(image, m, recipe.size, recipe.border)), affine=m)


@dataclass(frozen=True, slots=True)
class FramedFace:
    """A face crop for the model with the pose it was estimated at and the framing used (:data:`FRAMINGS`)."""

    crop: FaceCrop
    pose: Pose
    framing: str


def choose_framing(pose: Pose, profile_yaw: float = PROFILE_YAW) -> str:
    """``"box"`` when ``|yaw|`` exceeds ``profile_yaw`` degrees, else ``"aligned"``."""
    return "box" if abs(pose.yaw) > profile_yaw else "aligned"


def frame_face(image: np.ndarray, landmarks: Landmarks5 | np.ndarray, box: BBox, recipe,
               profile_yaw: float = PROFILE_YAW) -> FramedFace:
    """Frame one face for the model: the five-point warp, or the box framing beyond ``profile_yaw`` degrees of yaw
    (``profile_yaw=90`` never uses the box framing; ``0`` always does). The input image is not modified."""
    pose = estimate_pose(landmarks)
    framing = "box" if profile_yaw <= 0 else choose_framing(pose, profile_yaw)
    return FramedFace(crop=crop_as_framed(image, landmarks, box, framing, recipe), pose=pose, framing=framing)


def crop_as_framed(image: np.ndarray, landmarks: Landmarks5 | np.ndarray, box: BBox, framing: str,
                   recipe) -> FaceCrop:
    """The crop a face result's ``framing`` gave the model (to show a reviewer what the model saw)."""
    from agescan.align import align_face

    if framing not in FRAMINGS:
        raise InputError(f"The 'framing' parameter of crop_as_framed must be one of {FRAMINGS}. Got {framing!r}.")
    return box_frame(image, landmarks, box, recipe) if framing == "box" else align_face(image, landmarks, recipe)
