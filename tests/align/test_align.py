"""Alignment: exact similarity recovery, declared framing, pure functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agescan import InputError
from agescan.align import UTKFACE_TEMPLATE, CropRecipe, align_face, similarity_transform


def _rot_scale(points: np.ndarray, angle: float, scale: float, t: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    r = np.array([[c, -s], [s, c]]) * scale
    return points @ r.T + np.asarray(t)


def test_similarity_transform_recovers_exact_transform():
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    dst = _rot_scale(src, 0.3, 1.7, (12.0, -4.0))
    m = similarity_transform(src, dst)
    assert np.allclose(src @ m[:, :2].T + m[:, 2], dst, atol=1e-9)


def test_degenerate_landmarks_raise():
    with pytest.raises(InputError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))


def test_margin_zero_reproduces_utkface_framing():
    # A chip whose landmarks sit exactly on the template maps onto itself (scaled to the crop size).
    chip = np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    lm = np.asarray(UTKFACE_TEMPLATE) * 200
    crop = align_face(chip, lm, CropRecipe(size=100, margin=0.0))
    assert np.allclose(crop.affine[:, :2], np.eye(2) * 0.5, atol=1e-9)
    assert np.allclose(crop.affine[:, 2], 0, atol=1e-9)


def test_rotated_face_is_uprighted_and_input_untouched():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    before = image.copy()
    lm = _rot_scale(np.asarray(UTKFACE_TEMPLATE) * 120, math.radians(25), 1.0, (90, 60))
    recipe = CropRecipe(size=64, margin=0.25)
    crop = align_face(image, lm, recipe)
    assert np.array_equal(image, before)
    mapped = lm @ crop.affine[:, :2].T + crop.affine[:, 2]
    assert np.allclose(mapped, recipe.destination(), atol=1e-6)
    assert crop.image.shape == (64, 64, 3) and crop.image.dtype == np.uint8


def test_large_faces_are_downscaled_without_aliasing():
    # A fine checkerboard averages to mid-grey when shrunk properly; naive bilinear sampling aliases.
    yy, xx = np.mgrid[0:1000, 0:1000]
    board = (((yy // 2) + (xx // 2)) % 2 * 255).astype(np.uint8)
    image = np.dstack([board] * 3)
    lm = np.asarray(UTKFACE_TEMPLATE) * 800 + 100
    crop = align_face(image, lm, CropRecipe(size=64))
    assert abs(float(crop.image.mean()) - 127.5) < 10
    assert float(crop.image.std()) < 20


def test_recipe_round_trip_and_validation():
    r = CropRecipe(size=96, margin=0.4, border="constant")
    assert CropRecipe.from_dict(r.to_dict()) == r
    with pytest.raises(InputError, match="'size' parameter of CropRecipe"):
        CropRecipe(size=4)
    with pytest.raises(InputError, match="'border' parameter"):
        CropRecipe(border="wrap")
