"""Face only: keep the face box (grown by a margin, as the model's crop needs) and blank everything else.

What a platform needs to estimate an age is the face; the background, other people's bodies, the room, the text on
a screen are not needed and are removed. With several faces every face's region is kept.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from agescan._validation import check_number
from agescan.privacy.regions import box_pixels
from agescan.types import BBox, Landmarks5

#: Context kept around the face box on every side, as a share of its width and height: the model's crop (the
#: aligned template square with its margin) and the detector's view of the face fit inside it.
FACE_ONLY_MARGIN = 0.2


def face_only_many(image: np.ndarray, boxes: Sequence[BBox], *, margin: float = FACE_ONLY_MARGIN,
                   color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """A new image of ``color`` with the pixels of every box (grown by ``margin``) copied from ``image``; blank when
    there is no box."""
    check_number(margin, "margin", "face_only", lo=0.0, hi=2.0)
    out = np.empty_like(image)
    out[...] = np.asarray(color, dtype=image.dtype)
    for box in boxes:
        x0, y0, x1, y1 = box_pixels(box, image.shape, margin)
        out[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    return out


def face_only(image: np.ndarray, landmarks: Landmarks5 | None, box: BBox, *, margin: float = FACE_ONLY_MARGIN,
              color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Return a new image keeping only one face's box grown by ``margin`` (the rest ``color``).

    Args:
        image: HxWx3 uint8 RGB (not modified).
        landmarks: unused; accepted so every transform takes the same arguments.
        box: the face box.
        margin: context kept on every side, as a share of the box's width and height.
        color: what the rest becomes (black).
    """
    return face_only_many(image, [box], margin=margin, color=color)
