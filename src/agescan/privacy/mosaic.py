"""Mosaics over the eyes.

:func:`eye_mosaic` is Wang et al.'s: the landmark eye region
(:func:`~agescan.privacy.regions.eye_region_polygon`, expanded by 10%) cut into square cells of 10x10 pixels at the
reference face size (:data:`~agescan.privacy.regions.REFERENCE_FACE`; the cell side scales with the face), every
cell filled with the colour of one of its own pixels drawn at random (seeded). Unlike a mean, a drawn pixel is one
real sample, and the region cannot be recovered (the other pixels are gone).

:func:`eye_band_mosaic` pixelates the eye *band* instead (the band's rotated rectangle, blocks of a quarter of the
band's height holding their mean colour): what agescan 0.1's ``eye-mosaic`` was, and what the web page of
``agescan serve`` draws in the browser.
"""

from __future__ import annotations

import numpy as np

from agescan._validation import check_number
from agescan.privacy.eyeband import eye_band_polygon
from agescan.privacy.regions import eye_region_polygon, face_scale, polygon_mask
from agescan.types import BBox, Landmarks5

#: The paper's cell side at the reference face size.
PAPER_CELL = 10


def mosaic_cell(box: BBox, cell: int = PAPER_CELL) -> int:
    """The cell side used for a face: ``cell`` pixels at the reference face size, scaled with the face, >= 2."""
    return max(2, int(round(cell * face_scale(box))))


def _region_bounds(poly: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = (max(0, int(np.floor(v))) for v in poly.min(0))
    x1, y1 = min(w, int(np.ceil(poly[:, 0].max())) + 1), min(h, int(np.ceil(poly[:, 1].max())) + 1)
    return x0, y0, x1, y1


def eye_mosaic(image: np.ndarray, landmarks: Landmarks5, box: BBox, *, seed: int | np.random.SeedSequence = 0,
               cell: int = PAPER_CELL, expand: float = 0.10, scale_with_face: bool = True) -> np.ndarray:
    """Return a copy of ``image`` with one face's eye region as a mosaic of randomly sampled cells.

    Args:
        image: HxWx3 uint8 RGB (not modified).
        landmarks: the face's five landmarks (eye centres and nose tip place the region).
        box: the face box (its width scales the cell side).
        seed: seeds the pixel drawn in every cell (same seed, same mosaic).
        cell: cell side in pixels at the reference face size (the paper's 10).
        expand: growth of the eye region (the paper's 0.10).
        scale_with_face: False keeps ``cell`` pixels whatever the face size.
    """
    check_number(cell, "cell", "eye_mosaic", lo=1, hi=1000, integer=True)
    check_number(expand, "expand", "eye_mosaic", lo=0.0, hi=2.0)
    out = image.copy()
    poly = eye_region_polygon(landmarks, expand)
    x0, y0, x1, y1 = _region_bounds(poly, image.shape)
    if x1 <= x0 or y1 <= y0:
        return out
    side = mosaic_cell(box, cell) if scale_with_face else cell
    rh, rw = y1 - y0, x1 - x0
    nby, nbx = -(-rh // side), -(-rw // side)
    rng = np.random.default_rng(seed)
    # One pixel per cell, drawn uniformly from the cell's pixels (the last row/column of cells may be cut short).
    ch = np.minimum(side, rh - np.arange(nby) * side)
    cw = np.minimum(side, rw - np.arange(nbx) * side)
    dy = (rng.random((nby, nbx)) * ch[:, None]).astype(np.int64)
    dx = (rng.random((nby, nbx)) * cw[None, :]).astype(np.int64)
    sy = np.arange(nby)[:, None] * side + dy
    sx = np.arange(nbx)[None, :] * side + dx
    region = image[y0:y1, x0:x1]
    samples = region[sy, sx]  # (nby, nbx, 3)
    tiled = np.repeat(np.repeat(samples, side, 0), side, 1)[:rh, :rw]
    inside = polygon_mask(image.shape, poly)[y0:y1, x0:x1]
    out[y0:y1, x0:x1][inside] = tiled[inside]
    return out


def eye_band_mosaic(image: np.ndarray, landmarks: Landmarks5, box: BBox, *, height_frac: float = 0.25,
                    width_frac: float = 0.95, blocks: int = 4) -> np.ndarray:
    """Return a copy of ``image`` with the eye band's region of one face pixelated (blocks of mean colour).

    Args:
        image: HxWx3 uint8 RGB (not modified).
        landmarks, box: the face (eye centres place the band, the box sizes it).
        height_frac, width_frac: the band's size, as :func:`~agescan.privacy.eye_band`.
        blocks: blocks across the band's height (block side = band height / blocks, at least 2 pixels).
    """
    check_number(blocks, "blocks", "eye_band_mosaic", lo=1, hi=64, integer=True)
    check_number(height_frac, "height_frac", "eye_band_mosaic", lo=0.0, hi=1.0, lo_open=True)
    check_number(width_frac, "width_frac", "eye_band_mosaic", lo=0.0, hi=2.0, lo_open=True)
    out = image.copy()
    poly = eye_band_polygon(landmarks, box, height_frac, width_frac)
    x0, y0, x1, y1 = _region_bounds(poly, image.shape)
    if x1 <= x0 or y1 <= y0:
        return out
    block = max(2, int(round(height_frac * box.height / blocks)))
    region = image[y0:y1, x0:x1].astype(np.float64)
    rh, rw = region.shape[:2]
    nby, nbx = -(-rh // block), -(-rw // block)
    padded = np.zeros((nby * block, nbx * block, 3))
    count = np.zeros((nby * block, nbx * block, 1))
    padded[:rh, :rw], count[:rh, :rw] = region, 1.0
    sums = padded.reshape(nby, block, nbx, block, 3).sum((1, 3))
    means = sums / np.maximum(count.reshape(nby, block, nbx, block, 1).sum((1, 3)), 1.0)
    tiled = np.repeat(np.repeat(np.round(means).astype(np.uint8), block, 0), block, 1)[:rh, :rw]
    inside = polygon_mask(image.shape, poly)[y0:y1, x0:x1]
    out[y0:y1, x0:x1][inside] = tiled[inside]
    return out
