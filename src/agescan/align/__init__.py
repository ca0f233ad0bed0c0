"""Five-point face alignment: a similarity transform to a canonical template, then a square crop.

The same function produces training crops and inference crops, so a model always sees the framing
its card declares (:class:`CropRecipe`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from agescan._validation import check_number
from agescan.errors import InputError
from agescan.types import FaceCrop, Landmarks5

#: Mean MTCNN landmarks of UTKFace "aligned & cropped" faces, mirrored to be symmetric, as fractions
#: of the 200x200 chip (eyes, nose, mouth corners). Margin 0 with this template reproduces the
#: UTKFace framing (forehead to chin), which is what models trained on UTKFace expect.
UTKFACE_TEMPLATE: tuple[tuple[float, float], ...] = (
    (0.3045, 0.2883),
    (0.6955, 0.2883),
    (0.5000, 0.5225),
    (0.3275, 0.6895),
    (0.6725, 0.6895),
)


@dataclass(frozen=True)
class CropRecipe:
    """How a model wants its face cropped; stored in every model card.

    Args:
        size: output side in pixels (square).
        margin: extra context on every side, as a fraction of the template square (0.25 adds a quarter
            of the face square left, right, top and bottom; the face then fills 1/1.5 of the crop).
        template: five (x, y) landmark positions in the unit square at margin 0.
        border: how pixels outside the image are filled: "replicate" or "constant" (black).
    """

    size: int = 64
    margin: float = 0.0
    template: tuple[tuple[float, float], ...] = UTKFACE_TEMPLATE
    border: str = "replicate"

    def __post_init__(self) -> None:
        check_number(self.size, "size", "CropRecipe", lo=8, hi=1024, integer=True)
        check_number(self.margin, "margin", "CropRecipe", lo=0.0, hi=2.0)
        if self.border not in ("replicate", "constant"):
            raise InputError(f"The 'border' parameter of CropRecipe must be 'replicate' or 'constant'. "
                             f"Got {self.border!r}.")
        if len(self.template) != 5:
            raise InputError(f"The 'template' parameter of CropRecipe must have 5 points. Got {self.template!r}.")

    def destination(self) -> np.ndarray:
        """Template landmark positions in output pixels, (5, 2) float64."""
        t = np.asarray(self.template, dtype=np.float64)
        return (t + self.margin) / (1.0 + 2.0 * self.margin) * self.size

    def to_dict(self) -> dict:
        d = asdict(self)
        d["template"] = [list(p) for p in self.template]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CropRecipe":
        d = dict(d)
        d["template"] = tuple(tuple(float(v) for v in p) for p in d.get("template", UTKFACE_TEMPLATE))
        return cls(**d)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst (Umeyama 1991).

    Returns a 2x3 float64 matrix. Reflections are excluded.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise InputError("Landmarks are degenerate (all points coincide); cannot align this face.")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def warp(image: np.ndarray, affine: np.ndarray, size: int, border: str = "replicate") -> np.ndarray:
    """Apply a 2x3 affine (original -> output) producing a size x size image, without aliasing.

    When the transform shrinks by more than 2x, the relevant region is first reduced with area
    averaging, because bilinear warping alone aliases badly on large faces.
    """
    affine = np.asarray(affine, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    if scale < 0.5:
        # Region of the source that maps into the output (plus a small guard band).
        inv = cv2.invertAffineTransform(affine)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
        pts = corners @ inv.T
        h, w = image.shape[:2]
        x1 = int(max(0, np.floor(pts[:, 0].min()) - 2))
        y1 = int(max(0, np.floor(pts[:, 1].min()) - 2))
        x2 = int(min(w, np.ceil(pts[:, 0].max()) + 2))
        y2 = int(min(h, np.ceil(pts[:, 1].max()) + 2))
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            f = scale * 1.5  # keep ~1.5x oversampling for the final bilinear step
            roi = image[y1:y2, x1:x2]
            rw, rh = max(1, round((x2 - x1) * f)), max(1, round((y2 - y1) * f))
            small = cv2.resize(roi, (rw, rh), interpolation=cv2.INTER_AREA)
            fx, fy = rw / (x2 - x1), rh / (y2 - y1)
            # Compose: small -> roi -> original -> output.
            to_orig = np.array([[1 / fx, 0, x1], [0, 1 / fy, y1], [0, 0, 1]], dtype=np.float64)
            affine = affine @ to_orig
            image = small
    return cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=mode)


def align_face(image: np.ndarray, landmarks: Landmarks5 | np.ndarray, recipe: CropRecipe = CropRecipe()) -> FaceCrop:
    """Crop one face as ``recipe`` declares; the input image is not modified.

    Args:
        image: HxWx3 uint8 RGB.
        landmarks: five points (left eye, right eye, nose, left and right mouth corner).
        recipe: output size, margin and template.

    Returns:
        A :class:`FaceCrop` with the new crop and the original -> crop affine.

    Example:
        >>> crop = align_face(image, detection.landmarks, CropRecipe(size=64))  # doctest: +SKIP
    """
    pts = landmarks.as_array() if isinstance(landmarks, Landmarks5) else np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise InputError(f"The 'landmarks' parameter of align_face must be 5 (x, y) points. Got shape {pts.shape}.")
    m = similarity_transform(pts, recipe.destination())
    crop = warp(image, m, recipe.size, recipe.border)
    return FaceCrop(image=np.ascontiguousarray(crop), affine=m)


__all__ = ["CropRecipe", "UTKFACE_TEMPLATE", "align_face", "similarity_transform", "warp"]


from agescan.align.pose import (  # noqa: E402  (pose uses align_face and warp defined above)
    BOX_CENTRE, BOX_HEIGHT, BOX_WIDTH, PROFILE_YAW, FramedFace, Pose, box_affine, box_frame, choose_framing, crop_as_framed, estimate_pose, frame_face)
from agescan.types import FRAMINGS  # noqa: E402

__all__ += ["BOX_CENTRE", "BOX_HEIGHT", "BOX_WIDTH", "FRAMINGS", "PROFILE_YAW", "FramedFace", "Pose", "box_affine", "box_frame", "choose_framing",
            "crop_as_framed", "estimate_pose", "frame_face"]
