"""MTCNN on real faces: boxes, landmarks in the right places, nothing on blank images."""

from __future__ import annotations

import numpy as np
import pytest

from agescan import InputError, read_image
from agescan.detect import FaceDetector, create_detector, list_detectors
from tests.conftest import scene_with_faces


@pytest.fixture(scope="module")
def detector():
    return create_detector("mtcnn")


def test_registry_lists_and_builds_every_detector():
    assert "mtcnn" in list_detectors()
    for name in list_detectors():
        assert isinstance(create_detector(name), FaceDetector)


def test_astronaut_one_face_with_sane_landmarks(detector, astronaut):
    dets = detector.detect(astronaut)
    assert len(dets) == 1
    d = dets[0]
    assert d.score > 0.95
    # Eileen Collins' face in the 512x512 portrait lies roughly in x 150-260, y 50-200.
    assert 130 < d.box.x1 < 200 and 220 < d.box.x2 < 290 and 20 < d.box.y1 < 110 and 150 < d.box.y2 < 230
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = d.landmarks.points
    assert lx < nx < rx and ly < ny < mly and abs(ly - ry) < 15 and mlx < mrx
    assert all(d.box.x1 <= x <= d.box.x2 and d.box.y1 <= y <= d.box.y2 for x, y in d.landmarks.points)


def test_no_face_is_an_empty_tuple(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.zeros((240, 320, 3), np.uint8)) == ()
    assert detector.detect(np.full((100, 100, 3), 255, np.uint8)) == ()
    smooth = np.repeat(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], 240, 0).repeat(3, 2)
    assert detector.detect(smooth) == ()
    assert isinstance(detector.detect(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), tuple)


def test_tiny_and_odd_shaped_images(detector):
    for shape in ((1, 1, 3), (5, 400, 3), (400, 5, 3), (11, 11, 3)):
        assert detector.detect(np.zeros(shape, np.uint8)) == ()


def test_rejects_non_rgb_arrays(detector):
    with pytest.raises(InputError, match="read_image"):
        detector.detect(np.zeros((50, 50), np.uint8))


def test_input_not_modified(detector, astronaut):
    before = astronaut.copy()
    detector.detect(astronaut)
    assert np.array_equal(before, astronaut)


def test_children_and_small_faces_in_a_scene(detector, utkface_faces):
    """Real children's and adults' faces pasted at 40-160 px into one scene are all found."""
    import cv2

    chosen = [p for p, age in utkface_faces if age in (1, 5, 12, 30)]
    chips = [cv2.resize(read_image(p), (s, s), interpolation=cv2.INTER_AREA)
             for p, s in zip(chosen, (160, 90, 60, 40))]
    scene, boxes = scene_with_faces(chips, size=(480, 640), seed=3)
    dets = detector.detect(scene)
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert any(d.box.x1 < cx < d.box.x2 and d.box.y1 < cy < d.box.y2 for d in dets), (x1, y1, x2, y2)


def test_occluded_preset_finds_more_eye_banded_faces():
    from agescan.eval.run import _central_face, pad_chip
    from agescan.privacy import eye_band
    from tests.conftest import UTKFACE, utkface_rows

    strict, lenient = create_detector("mtcnn", threads=1), create_detector("mtcnn-occluded", threads=1)
    assert lenient.config.thresholds == (0.6, 0.5, 0.5) and strict.config.thresholds == (0.6, 0.7, 0.8)
    found = {"mtcnn": 0, "mtcnn-occluded": 0}
    for r in utkface_rows("val")[:40]:
        img = read_image(UTKFACE / r["path"])
        h, w = img.shape[:2]
        padded = pad_chip(img)
        face = _central_face(strict.detect(padded), w, h)
        if face is None:
            continue
        banded = eye_band(padded, face.landmarks, face.box)
        found["mtcnn"] += _central_face(strict.detect(banded), w, h) is not None
        found["mtcnn-occluded"] += _central_face(lenient.detect(banded), w, h) is not None
    assert found["mtcnn-occluded"] > found["mtcnn"] * 1.2, found
