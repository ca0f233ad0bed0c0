"""Every registered privacy transform: pure, deterministic for its seed/key, confined to its footprint, placed from
the landmarks of a real face, reversible where it claims to be; and the registry is what surfaces enumerate."""

from __future__ import annotations

import numpy as np
import pytest

from agescan import AgeEstimator, ConfigError, ModelNotFoundError
from agescan.privacy import (anonymise, canonical_op, eye_band_polygon, eye_region_polygon, get_transform,
                             list_privacy_ops, privacy_ops)
from agescan.types import BBox, Detection, Landmarks5

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def _faces():
    a = Detection(BBox(40, 30, 160, 170), Landmarks5(((70, 80), (130, 84), (100, 110), (80, 130), (120, 130))), 0.9)
    b = Detection(BBox(200, 40, 280, 130), Landmarks5(((220, 70), (260, 70), (240, 90), (225, 110), (255, 110))), 0.8)
    return [a, b]


def _noise(shape=(200, 300, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _apply(op, img, faces, seed=0, key=KEY):
    t = get_transform(op)
    return t.apply(img, faces, seed=seed, key=key if t.needs_key else None)


@pytest.fixture(scope="module")
def real_face(estimator, astronaut):
    (face,) = estimator.predict(astronaut).faces
    return astronaut, Detection(face.box, face.landmarks, face.detector_score)


def test_the_registry_holds_the_papers_transforms():
    assert set(list_privacy_ops()) >= {"eye-band", "eye-mask", "eye-mosaic", "face-blur", "keyed-permutation",
                                       "face-only"}
    assert "keyed-permutation" not in list_privacy_ops(keyless=True)
    assert canonical_op("eyeband") == "eye-band"  # stored reports and cards use the old spelling


@pytest.mark.parametrize("op", list_privacy_ops())
def test_pure_input_unchanged_byte_for_byte(op, real_face):
    img, face = real_face
    before = img.tobytes()
    out = _apply(op, img, [face])
    assert img.tobytes() == before and img.flags.writeable
    assert out is not img and out.shape == img.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, img)
    assert (out != img).any()  # it did something
    single = get_transform(op)(img, face.landmarks, face.box, key=KEY if get_transform(op).needs_key else None)
    assert img.tobytes() == before and np.array_equal(single, out)  # per-face call = one-face apply


@pytest.mark.parametrize("op", list_privacy_ops())
def test_deterministic_for_its_seed_and_key(op):
    img, t = _noise(), get_transform(op)
    assert np.array_equal(_apply(op, img, _faces(), seed=3), _apply(op, img, _faces(), seed=3))
    if t.seeded:
        assert not np.array_equal(_apply(op, img, _faces(), seed=3), _apply(op, img, _faces(), seed=4))
    else:
        assert np.array_equal(_apply(op, img, _faces(), seed=3), _apply(op, img, _faces(), seed=4))
    if t.needs_key:
        assert not np.array_equal(_apply(op, img, _faces(), key=KEY), _apply(op, img, _faces(), key=OTHER_KEY))
        with pytest.raises(ConfigError, match="needs a secret key"):
            t.apply(img, _faces())


@pytest.mark.parametrize("op", list_privacy_ops())
def test_changes_stay_inside_the_footprint_and_fill_it(op):
    img = _noise()
    out = _apply(op, img, _faces())
    foot = get_transform(op).footprint(img.shape, _faces())
    changed = (out != img).any(2)
    assert foot.any() and not changed[~foot].any()
    assert changed[foot].mean() > 0.9  # random pixels: nearly every one replaced


@pytest.mark.parametrize("op", list_privacy_ops())
def test_placed_from_the_landmarks_of_a_real_face(op, real_face):
    img, face = real_face
    t = get_transform(op)
    out = _apply(op, img, [face])
    changed = (out != img).any(2)
    eyes = [tuple(int(round(v)) for v in p) for p in face.landmarks.points[:2]]
    mouth = [tuple(int(round(v)) for v in p) for p in face.landmarks.points[3:]]
    for x, y in eyes:  # the eyes are hidden by every transform but face-only (which keeps the face itself)
        assert (changed[y - 2:y + 3, x - 2:x + 3].mean() > 0.5) == (op != "face-only"), op
    x0, y0, x1, y1 = (int(round(v)) for v in face.box.as_tuple())
    if t.region == "eyes":
        for x, y in mouth:  # the mouth stays for the model
            assert not changed[y - 3:y + 4, x - 3:x + 4].any(), op
        assert not changed[:y0].any() and not changed[y1 + 1:].any()  # nothing outside the face's rows
    elif t.region == "face":
        for x, y in mouth:
            assert changed[y - 3:y + 4, x - 3:x + 4].mean() > 0.5
        assert not changed[:max(0, y0 - 1)].any() and not changed[:, x1 + 1:].any()
    elif op == "face-only":
        assert not changed[y0:y1, x0:x1].any()  # the face is kept as it is
        assert (out[:20, :20] == 0).all() and (out[-20:, -20:] == 0).all()  # the background is gone


def test_eye_regions_follow_the_landmarks():
    f = _faces()[0]
    poly = eye_region_polygon(f.landmarks)
    mask = get_transform("eye-mask").footprint((200, 300, 3), [f])
    for x, y in f.landmarks.points[:2]:
        assert mask[int(round(y)), int(round(x))]
    assert not mask[110 + 8, 100]  # just below the nose tip: the nose's lower half stays
    d = np.hypot(60, 4)
    assert np.isclose(np.linalg.norm(poly[1] - poly[0]), 1.6 * 1.1 * d)  # outer corners +-0.8 d, +10%
    band = eye_band_polygon(f.landmarks, f.box)
    assert not np.allclose(poly, band)  # the paper's mask is not the band


def test_the_mosaic_is_cells_of_one_drawn_pixel():
    from agescan.privacy import eye_mosaic

    img = _noise((300, 300, 3), 1)
    f = Detection(BBox(38, 30, 262, 270), Landmarks5(((110, 120), (190, 120), (150, 165), (120, 200), (180, 200))), 1)
    assert f.box.width == 224  # the reference face: 10 x 10 pixel cells
    out = eye_mosaic(img, f.landmarks, f.box, seed=5)
    poly = eye_region_polygon(f.landmarks)
    x0, y0 = (int(np.floor(v)) for v in poly.min(0))
    inside = get_transform("eye-mosaic").footprint(img.shape, [f])
    cells: dict = {}
    for y, x in zip(*np.nonzero(inside)):
        cells.setdefault(((y - y0) // 10, (x - x0) // 10), set()).add(tuple(out[y, x]))
    assert len(cells) > 50 and all(len(c) == 1 for c in cells.values())  # one colour per cell
    for (cy, cx), (colour,) in list(cells.items())[::7]:  # and that colour is a pixel of the cell itself
        block = img[y0 + cy * 10:y0 + cy * 10 + 10, x0 + cx * 10:x0 + cx * 10 + 10].reshape(-1, 3)
        assert (block == colour).all(1).any()
    half = eye_mosaic(img, f.landmarks, BBox(38, 30, 150, 150), seed=5)  # a face half as wide: 5 px cells
    assert len(np.unique(half[inside].reshape(-1, 3), axis=0)) > len(np.unique(out[inside].reshape(-1, 3), axis=0))


def test_face_blur_kernel_scales_with_the_face():
    from agescan.privacy import blur_kernel

    assert blur_kernel(BBox(0, 0, 224, 260)) == 25  # the paper's at the reference size
    assert blur_kernel(BBox(0, 0, 448, 500)) == 51 and blur_kernel(BBox(0, 0, 112, 130)) == 13
    assert blur_kernel(BBox(0, 0, 10, 10)) == 3


def test_keyed_permutation_round_trips_with_the_key_only(real_face):
    img, face = real_face
    t = get_transform("keyed-permutation")
    hidden = t.apply(img, [face], key=KEY)
    assert t.reversible and np.array_equal(t.invert(hidden, key=KEY), img)
    wrong = t.invert(hidden, key=OTHER_KEY)
    assert (wrong != img).any(2).mean() > 0.9
    # a permutation keeps the colour histogram (docs/privacy.md says so)
    assert np.array_equal(np.sort(hidden.reshape(-1, 3), axis=0), np.sort(img.reshape(-1, 3), axis=0))
    with pytest.raises(ConfigError, match="cannot be undone"):
        get_transform("eye-mask").invert(hidden, key=KEY)
    with pytest.raises(Exception, match="at least 16 bytes"):
        t.apply(img, [], key=b"short")


def test_unknown_op_lists_the_registered_ones():
    with pytest.raises(ModelNotFoundError, match="eye-band, eye-band-mosaic, eye-mask"):
        privacy_ops.create("blur")
    with pytest.raises(ModelNotFoundError, match="eye-band"):
        AgeEstimator(anonymise="blur")
    with pytest.raises(ConfigError, match="needs a secret key"):
        AgeEstimator(anonymise="keyed-permutation")


def test_the_estimator_anonymises_before_the_model(estimator, astronaut):
    banded = AgeEstimator(anonymise="eye-band").load()
    clean, hidden = estimator.predict(astronaut), banded.predict(astronaut)
    assert len(clean.faces) == len(hidden.faces) == 1
    assert clean.faces[0].box == hidden.faces[0].box  # found on the image as given
    assert clean.faces[0].age != hidden.faces[0].age  # estimated from the banded face
    given = estimator.predict(anonymise(astronaut, clean.faces, "eye-band"), faces=[
        Detection(f.box, f.landmarks, f.detector_score) for f in clean.faces])
    assert abs(given.faces[0].age - hidden.faces[0].age) < 1e-6  # the same pixels either way
    assert AgeEstimator(anonymise="eyeband").anonymise == "eye-band"
