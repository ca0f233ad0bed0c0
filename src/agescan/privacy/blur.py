"""Face blur (Wang et al.'s "noise on face"): a Gaussian blur over the whole face box.

The paper blurs with a 25x25 Gaussian kernel on its faces; here the kernel is 25 pixels for a face box
:data:`~agescan.privacy.regions.REFERENCE_FACE` (224) pixels wide and scales with the face (odd, at least 3), so a
large face is hidden as much as a small one. Sigma follows OpenCV's rule for the kernel size
(0.3 * ((k - 1) / 2 - 1) + 0.8: 4.1 pixels at 25). Pixels outside the box are unchanged; inside it, the blur also
draws on the pixels around the box, so no dark seam appears at its edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from agescan._validation import check_number
from agescan.privacy.regions import box_pixels, face_scale
from agescan.types import BBox, Landmarks5

#: The paper's kernel side at the reference face size.
PAPER_KERNEL = 25


def blur_kernel(box: BBox, kernel: int = PAPER_KERNEL) -> int:
    """The Gaussian kernel side used for a face: ``kernel`` at the reference face size, scaled, odd, >= 3."""
    k = int(round(kernel * face_scale(box)))
    k = max(3, k)
    return k if k % 2 else k + 1


def face_blur(image: np.ndarray, landmarks: Landmarks5 | None, box: BBox, *, kernel: int = PAPER_KERNEL) -> np.ndarray:
    """Return a copy of ``image`` with one face box Gaussian-blurred.

    Args:
        image: HxWx3 uint8 RGB (not modified).
        landmarks: unused (the box is blurred); accepted so every transform takes the same arguments.
        box: the face box.
        kernel: kernel side at the reference face size (the paper's 25); scaled with the face.
    """
    check_number(kernel, "kernel", "face_blur", lo=1, hi=1001, integer=True)
    out = image.copy()
    x0, y0, x1, y1 = box_pixels(box, image.shape)
    if x1 <= x0 or y1 <= y0:
        return out
    k = blur_kernel(box, kernel)
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0 - k), max(0, y0 - k), min(w, x1 + k), min(h, y1 + k)
    blurred = cv2.GaussianBlur(image[cy0:cy1, cx0:cx1], (k, k), 0, borderType=cv2.BORDER_REPLICATE)
    out[y0:y1, x0:x1] = blurred[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
    return out
