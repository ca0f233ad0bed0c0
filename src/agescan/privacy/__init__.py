"""Privacy transforms: pure functions that return new arrays and never modify their input, and their registry.

Every transform hides part of each face before anything else sees it; surfaces (the service's ``anonymise``
option, :class:`agescan.AgeEstimator`'s ``anonymise``) name one from :data:`privacy_ops` and enumerate the registry
instead of keeping their own lists.

Example:
    >>> from agescan.privacy import anonymise, list_privacy_ops
    >>> list_privacy_ops()
    ['eye-band', 'eye-mosaic']
    >>> hidden = anonymise(image, detections, "eye-band")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from agescan._registry import Registry
from agescan.privacy.eyeband import eye_band, eye_band_polygon
from agescan.privacy.mosaic import eye_mosaic
from agescan.types import BBox, Landmarks5

#: A transform of one face: (image, landmarks, box) -> a new image.
PrivacyOp = Callable[[np.ndarray, Landmarks5, BBox], np.ndarray]

privacy_ops: Registry[PrivacyOp] = Registry("privacy op")


@privacy_ops.register("eye-band")
def _eye_band_op() -> PrivacyOp:
    """A black bar over the eyes (Chaves et al.: 25% of the face box's height, 95% of its width)."""
    return eye_band


@privacy_ops.register("eye-mosaic")
def _eye_mosaic_op() -> PrivacyOp:
    """The eye band's region pixelated: blocks of a quarter of the band's height, each its mean colour."""
    return eye_mosaic


def list_privacy_ops() -> list[str]:
    return privacy_ops.names()


def anonymise(image: np.ndarray, faces: Iterable, op: str) -> np.ndarray:
    """A copy of ``image`` with the registered transform ``op`` applied to every face (anything with ``box`` and
    ``landmarks``: detections or face results)."""
    transform = privacy_ops.create(op)
    out = image
    for f in faces:
        out = transform(out, f.landmarks, f.box)
    return out.copy() if out is image else out


__all__ = ["PrivacyOp", "anonymise", "eye_band", "eye_band_polygon", "eye_mosaic", "list_privacy_ops", "privacy_ops"]
