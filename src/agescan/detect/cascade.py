"""A union of two registered detectors: a specialist whose detections win, and a generalist that adds the faces the
specialist does not find.

Why: `yunet-s-ocl.utkface` was fine-tuned on UTKFace faces (frontal, aligned chips pasted into scenes) to find
faces whose eyes are hidden, babies and small faces; it finds fewer turned and in-the-wild faces than the WIDER
FACE weights it started from (fairface270, val: 91.5% against 100%). `yunet-s.wider` finds those, but only about
half of the banded faces. Together each covers the other's misses.

Merge rule: every specialist detection is kept (its landmarks follow MTCNN's convention, which the age models
were trained with); a generalist detection is added when its box centre lies in no specialist box and no
specialist box centre lies in it. Both run on the same image; the generalist can run at a coarser scale
(``secondary_min_face_size``) since the specialist already covers small faces.
"""

from __future__ import annotations

import numpy as np

from agescan.detect.base import Detections
from agescan.types import Detection


def _contains(d: Detection, x: float, y: float) -> bool:
    return d.box.x1 <= x <= d.box.x2 and d.box.y1 <= y <= d.box.y2


def _centre(d: Detection) -> tuple[float, float]:
    return (d.box.x1 + d.box.x2) / 2, (d.box.y1 + d.box.y2) / 2


class CascadeDetector:
    """Union of a ``primary`` detector and the non-overlapping detections of a ``secondary`` one.

    Args:
        name: the registered name.
        primary, secondary: detectors (anything with ``detect_batch`` and ``info``).
    """

    def __init__(self, name: str, primary, secondary):
        self.name = name
        self.primary = primary
        self.secondary = secondary

    def load(self) -> "CascadeDetector":
        for d in (self.primary, self.secondary):
            if hasattr(d, "load"):
                d.load()
        return self

    def info(self) -> dict:
        p, s = self.primary.info(), self.secondary.info()
        return {"name": self.name,
                "architecture": f"cascade: {p['name']} (kept), plus {s['name']} where it finds a face the first "
                                f"does not",
                "licence": f"{p['name']}: {p['licence']} | {s['name']}: {s['licence']}",
                "training_data": f"{p['name']}: {p['training_data']} | {s['name']}: {s['training_data']}",
                "score_threshold": {p["name"]: p["score_threshold"], s["name"]: s["score_threshold"]},
                "members": [p, s]}

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in an RGB uint8 image, sorted by score (empty if none)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        firsts = self.primary.detect_batch(images)
        seconds = self.secondary.detect_batch(images)
        out = []
        for first, second in zip(firsts, seconds):
            added = [d for d in second
                     if not any(_contains(f, *_centre(d)) or _contains(d, *_centre(f)) for f in first)]
            out.append(tuple(sorted((*first, *added), key=lambda d: -d.score)))
        return out
