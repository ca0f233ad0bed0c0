"""The eye band's mosaic (the web page's): blocks of the band's mean colour."""

from __future__ import annotations

import numpy as np

from agescan.privacy import eye_band_mosaic, eye_band_polygon
from agescan.types import BBox, Landmarks5


def test_the_band_mosaic_is_blocks_of_mean_colour():
    img = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    lm = Landmarks5(((70, 80), (130, 84), (100, 110), (80, 130), (120, 130)))
    box = BBox(40, 30, 160, 170)
    out = eye_band_mosaic(img, lm, box, blocks=4)
    block = round(0.25 * box.height / 4)
    poly = eye_band_polygon(lm, box)
    x0, y0 = (int(np.floor(v)) for v in poly.min(0))
    ys, xs = np.nonzero((out != img).any(2))
    cells: dict[tuple[int, int], set] = {}
    for y, x in zip(ys, xs):
        cells.setdefault(((y - y0) // block, (x - x0) // block), set()).add(tuple(out[y, x]))
    assert len(cells) > 20 and all(len(c) == 1 for c in cells.values())  # one colour per block
    ky, kx = sorted(cells)[len(cells) // 2]
    region = img[y0 + ky * block:y0 + (ky + 1) * block, x0 + kx * block:x0 + (kx + 1) * block].reshape(-1, 3)
    (colour,) = cells[(ky, kx)]
    assert np.allclose(colour, region.mean(0), atol=1.0)
