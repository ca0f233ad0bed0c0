"""Pose-aware framing: yaw and roll from five landmarks, the box framing, and the pipeline's choice on real faces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agescan import AgeEstimator, InputError, read_image
from agescan.align import (BOX_CENTRE, BOX_HEIGHT, BOX_WIDTH, PROFILE_YAW, UTKFACE_TEMPLATE, CropRecipe, align_face,
                           box_frame, crop_as_framed, estimate_pose, frame_face)
from agescan.types import BBox, Detection, Landmarks5
from tests.conftest import FAIRFACE, fairface_rows

FRONTAL = np.asarray(UTKFACE_TEMPLATE) * 200 + 50  # a symmetric frontal face in a 300 x 300 image


def _rotate(points: np.ndarray, degrees: float, centre=(150.0, 150.0)) -> np.ndarray:
    t = math.radians(degrees)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (points - centre) @ r.T + centre


def _turned(yaw: float) -> np.ndarray:
    """The template face turned by ``yaw`` degrees under the pose model (eyes close in, nose moves)."""
    p = FRONTAL.copy()
    half = (p[1, 0] - p[0, 0]) / 2
    c = 150.0
    p[[0, 1, 3, 4], 0] = c + (p[[0, 1, 3, 4], 0] - c) * math.cos(math.radians(yaw))
    p[2, 0] = c + 0.85 * half * math.sin(math.radians(yaw))
    return p


def test_frontal_rolled_and_turned_faces():
    assert estimate_pose(FRONTAL).yaw == 0.0 and estimate_pose(FRONTAL).roll == 0.0
    rolled = estimate_pose(_rotate(FRONTAL, 30))
    assert rolled.roll == pytest.approx(30, abs=0.01) and rolled.yaw == pytest.approx(0, abs=0.01)
    for yaw in (20, 50, 70):  # the model's own geometry is recovered exactly, and its mirror image flips the sign
        assert estimate_pose(_turned(yaw)).yaw == pytest.approx(yaw, abs=0.01)
        mirrored = _turned(yaw) * [-1, 1] + [300, 0]
        mirrored = mirrored[[1, 0, 2, 4, 3]]  # image-left stays first
        assert estimate_pose(mirrored).yaw == pytest.approx(-yaw, abs=0.01)
    # a turned face that is also rolled keeps its yaw
    assert estimate_pose(_rotate(_turned(60), -25)).yaw == pytest.approx(60, abs=0.01)
    with pytest.raises(InputError, match="5 finite"):
        estimate_pose(np.zeros((4, 2)))


def test_box_framing_of_a_frontal_face_is_the_warp_and_leaves_the_image_alone(astronaut):
    # a box where the default detector puts it on a frontal face gives the five-point warp's crop
    side = 200.0
    cx, cy = 50 + BOX_CENTRE[0] * side, 50 + BOX_CENTRE[1] * side
    box = BBox(cx - BOX_WIDTH * side / 2, cy - BOX_HEIGHT * side / 2, cx + BOX_WIDTH * side / 2,
               cy + BOX_HEIGHT * side / 2)
    recipe = CropRecipe(size=64, margin=0.1)
    before = astronaut.copy()
    boxed, aligned = box_frame(astronaut, FRONTAL, box, recipe), align_face(astronaut, FRONTAL, recipe)
    assert np.allclose(boxed.affine, aligned.affine, atol=1e-9)
    diff = np.abs(boxed.image.astype(int) - aligned.image.astype(int))  # rounding of the area reduction: a few levels
    assert diff.mean() < 1.5 and np.array_equal(astronaut, before)
    # rolled by 30 degrees (box grown as a rolled face's box grows), the crop is still upright
    rolled = box_frame(astronaut, _rotate(FRONTAL, 30), box, recipe)
    assert math.degrees(math.atan2(rolled.affine[1, 0], rolled.affine[0, 0])) == pytest.approx(-30, abs=0.01)


def test_frame_face_chooses_by_yaw(astronaut):
    recipe = CropRecipe(size=64)
    box = BBox(60, 20, 240, 280)
    assert frame_face(astronaut, FRONTAL, box, recipe).framing == "aligned"
    turned = frame_face(astronaut, _turned(PROFILE_YAW + 10), box, recipe)
    assert turned.framing == "box" and turned.pose.yaw == pytest.approx(PROFILE_YAW + 10, abs=0.01)
    assert frame_face(astronaut, _turned(PROFILE_YAW + 10), box, recipe, profile_yaw=90).framing == "aligned"
    assert frame_face(astronaut, FRONTAL, box, recipe, profile_yaw=0).framing == "box"
    with pytest.raises(InputError, match="framing"):
        crop_as_framed(astronaut, FRONTAL, box, "sideways", recipe)


def test_a_frontal_real_face_stays_aligned_mirrored_or_not(estimator, astronaut, utkface_faces):
    for img in (astronaut, np.ascontiguousarray(astronaut[:, ::-1])):
        (face,) = estimator.predict(img).faces
        assert face.framing == "aligned" and not face.profile and abs(face.yaw) < 25 and abs(face.roll) < 15
    for path, _ in utkface_faces:  # UTKFace's frontal chips, children to the elderly, as a user would give them
        faces = estimator.predict(path).faces
        assert all(f.framing == "aligned" for f in faces), (path, [f.yaw for f in faces])


def test_given_profile_landmarks_on_a_real_image_are_framed_from_the_box(estimator, astronaut):
    """The pipeline's hook: landmarks of a face turned past the threshold (here given, as a browser would) make
    the model see the box framing, and the crop a reviewer is shown is the one the model saw."""
    (found,) = estimator.detector.detect(astronaut)
    lm = found.landmarks.as_array().astype(np.float64)
    half = (lm[1, 0] - lm[0, 0]) / 2
    lm[2, 0] = (lm[0, 0] + lm[1, 0]) / 2 + 2.5 * half  # the nose beyond the far eye: a profile
    turned = Detection(box=found.box, landmarks=Landmarks5.from_array(lm), score=found.score)
    (face,) = estimator.predict(astronaut, faces=[turned]).faces
    assert face.framing == "box" and face.profile and face.yaw > PROFILE_YAW
    crop = crop_as_framed(astronaut, face.landmarks, face.box, face.framing, estimator.card.crop)
    (again,) = estimator.predict_crops(crop.image[None])
    # the model's own distribution of that crop, calibrated as every face is (agescan.decisions)
    assert np.allclose(estimator.decider.calibrate(again.as_array())[0], face.distribution.as_array(), atol=1e-6)
    (kept,) = estimator.replace(profile_yaw=90).predict(astronaut, faces=[turned]).faces
    assert kept.framing == "aligned" and kept.yaw == face.yaw


#: fairface270 faces in near-profile (FairFace, CC BY 4.0): a boy and a woman turned to the image's right, a man to
#: its left.
PROFILES = ("images/fairface_0375.jpg", "images/fairface_0084.jpg", "images/fairface_0307.jpg")


def test_real_profiles_are_framed_from_the_box_and_their_mirror_images_turn_the_other_way(estimator):
    fairface_rows()
    for path in PROFILES:
        image = read_image(FAIRFACE / path)
        yaws = []
        for img in (image, np.ascontiguousarray(image[:, ::-1])):
            faces = estimator.predict(img).faces
            central = min(faces, key=lambda f: abs((f.box.x1 + f.box.x2) / 2 - img.shape[1] / 2)
                          + abs((f.box.y1 + f.box.y2) / 2 - img.shape[0] / 2))
            assert central.framing == "box" and central.profile and abs(central.yaw) > 60, (path, central.yaw)
            yaws.append(central.yaw)
        assert np.sign(yaws[0]) == -np.sign(yaws[1]), (path, yaws)


def test_the_estimator_refuses_a_yaw_threshold_outside_0_90():
    with pytest.raises(InputError, match="profile_yaw"):
        AgeEstimator(profile_yaw=120)
