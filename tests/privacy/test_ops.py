"""Every registered privacy op: pure, hides the eye region of every face, leaves the rest of the image alone."""

from __future__ import annotations

import numpy as np
import pytest

from agescan import AgeEstimator, ModelNotFoundError
from agescan.privacy import anonymise, eye_band_polygon, list_privacy_ops, privacy_ops
from agescan.types import BBox, Detection, Landmarks5


def _faces():
    a = Detection(BBox(40, 30, 160, 170), Landmarks5(((70, 80), (130, 84), (100, 110), (80, 130), (120, 130))), 0.9)
    b = Detection(BBox(200, 40, 280, 130), Landmarks5(((220, 70), (260, 70), (240, 90), (225, 110), (255, 110))), 0.8)
    return [a, b]


@pytest.mark.parametrize("op", list_privacy_ops())
def test_privacy_op_hides_the_eyes_of_every_face_and_nothing_else(op):
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    copy = img.copy()
    out = anonymise(img, _faces(), op)
    assert np.array_equal(img, copy) and out.shape == img.shape and out.dtype == np.uint8  # pure
    band = np.zeros(img.shape[:2], np.uint8)
    for f in _faces():
        cv2.fillConvexPoly(band, np.round(eye_band_polygon(f.landmarks, f.box) * 16).astype(np.int32), 1, shift=4)
    changed = (out != img).any(2)
    assert not changed[band == 0].any()  # only inside the bands
    assert changed[band == 1].mean() > 0.95  # random pixels: nearly all of them replaced
    for f in _faces():
        for x, y in f.landmarks.points[:2]:  # the eye centre and its neighbourhood are no longer the image
            y, x = int(round(y)), int(round(x))
            assert (out[y - 2:y + 3, x - 2:x + 3] != img[y - 2:y + 3, x - 2:x + 3]).any(2).all()


def test_the_mosaic_is_blocks_of_mean_colour():
    from agescan.privacy import eye_mosaic

    img = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    f = _faces()[0]
    out = eye_mosaic(img, f.landmarks, f.box, blocks=4)
    block = round(0.25 * f.box.height / 4)
    poly = eye_band_polygon(f.landmarks, f.box)
    x0, y0 = (int(np.floor(v)) for v in poly.min(0))
    ys, xs = np.nonzero((out != img).any(2))
    cells: dict[tuple[int, int], set] = {}
    for y, x in zip(ys, xs):
        cells.setdefault(((y - y0) // block, (x - x0) // block), set()).add(tuple(out[y, x]))
    assert len(cells) > 20 and all(len(c) == 1 for c in cells.values())  # one colour per block
    # a block in the middle of the band holds the mean colour of the original block
    ky, kx = sorted(cells)[len(cells) // 2]
    region = img[y0 + ky * block:y0 + (ky + 1) * block, x0 + kx * block:x0 + (kx + 1) * block].reshape(-1, 3)
    (colour,) = cells[(ky, kx)]
    assert np.allclose(colour, region.mean(0), atol=1.0)


def test_unknown_op_lists_the_registered_ones():
    with pytest.raises(ModelNotFoundError, match="eye-band, eye-mosaic"):
        privacy_ops.create("blur")
    with pytest.raises(ModelNotFoundError, match="eye-band"):
        AgeEstimator(anonymise="blur")


def test_the_estimator_anonymises_before_the_model(estimator, astronaut):
    banded = AgeEstimator(anonymise="eye-band").load()
    clean, hidden = estimator.predict(astronaut), banded.predict(astronaut)
    assert len(clean.faces) == len(hidden.faces) == 1
    assert clean.faces[0].box == hidden.faces[0].box  # found on the image as given
    assert clean.faces[0].age != hidden.faces[0].age  # estimated from the banded face
    given = estimator.predict(anonymise(astronaut, clean.faces, "eye-band"), faces=[
        Detection(f.box, f.landmarks, f.detector_score) for f in clean.faces])
    assert abs(given.faces[0].age - hidden.faces[0].age) < 1e-6  # the same pixels either way
