"""The eye band: geometry as the paper defines it, pure function."""

from __future__ import annotations

import math

import numpy as np

from agescan.privacy import eye_band, eye_band_polygon
from agescan.types import BBox, Landmarks5


def _face(angle_deg: float = 0.0):
    cx, cy, half = 100.0, 80.0, 30.0
    a = math.radians(angle_deg)
    left = (cx - half * math.cos(a), cy - half * math.sin(a))
    right = (cx + half * math.cos(a), cy + half * math.sin(a))
    lm = Landmarks5((left, right, (100.0, 110.0), (80.0, 130.0), (120.0, 130.0)))
    return lm, BBox(40.0, 30.0, 160.0, 170.0)


def test_band_size_and_orientation():
    lm, box = _face(20)
    poly = eye_band_polygon(lm, box)
    length = np.linalg.norm(poly[1] - poly[0])
    height = np.linalg.norm(poly[3] - poly[0])
    assert math.isclose(length, 0.95 * box.width, rel_tol=1e-9)
    assert math.isclose(height, 0.25 * box.height, rel_tol=1e-9)
    d = poly[1] - poly[0]
    assert math.isclose(math.degrees(math.atan2(d[1], d[0])), 20, abs_tol=1e-9)
    assert np.allclose(poly.mean(0), (100.0, 80.0))


def test_band_covers_the_eyes_and_copies():
    img = np.full((200, 200, 3), 200, np.uint8)
    lm, box = _face(-15)
    out = eye_band(img, lm, box)
    assert img.min() == 200  # input untouched
    for x, y in lm.points[:2]:
        assert out[int(round(y)), int(round(x))].tolist() == [0, 0, 0]
    nx, ny = lm.points[2]
    assert out[int(ny), int(nx)].tolist() == [200, 200, 200]  # the nose stays visible
    blacked = (out == 0).all(2).sum()
    assert abs(blacked - 0.95 * box.width * 0.25 * box.height) / blacked < 0.05
