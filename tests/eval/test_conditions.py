"""Evaluation conditions come from the privacy registry; each is drawn before the pipeline, on real faces."""

from __future__ import annotations

import numpy as np
import pytest

from agescan.errors import ConfigError
from agescan.eval.run import canonical_condition, compare, conditions, pad_chip, transform_chip
from agescan.privacy import get_transform, list_privacy_ops


def test_conditions_enumerate_the_registry():
    assert conditions() == ["clean", *list_privacy_ops()]
    assert canonical_condition("eyeband") == "eye-band"  # the spelling stored reports and cards use
    with pytest.raises(ConfigError, match="clean, eye-band"):
        canonical_condition("sunglasses")


def test_compare_accepts_the_old_spelling_of_a_condition():
    base = {"model": "a", "rows_sha256": "f", "condition": "eyeband", "n": 3, "mae": 5.0, "mae_0_25": 4.0,
            "group_accuracy_0_25": 0.5, "cs5": 0.6, "challenge25_teens_under_25": 0.9}
    out = compare(base, {**base, "condition": "eye-band", "mae": 4.0})
    assert out["metrics"]["mae"]["impv"] > 0


@pytest.mark.slow
def test_every_condition_end_to_end_on_real_faces(utkface_faces):
    from agescan.detect import create_detector
    from agescan.eval.run import BAND_REFERENCE, evaluate_folder
    from agescan.io import read_image
    from tests.conftest import UTKFACE

    ref = create_detector(BAND_REFERENCE, threads=1)
    img = read_image(utkface_faces[0][0])
    h, w = img.shape[:2]
    padded = pad_chip(img)
    before = padded.tobytes()
    for cond in conditions():
        out = transform_chip(ref, padded, w, h, cond, seed=1)
        assert padded.tobytes() == before
        assert np.array_equal(out, padded) == (cond == "clean"), cond
        if cond != "clean" and get_transform(cond).region == "eyes":  # the border rows stay
            assert (out[:20] == padded[:20]).all(), cond
    reports = {c: evaluate_folder("dexnet-m-ocl.utkface", UTKFACE, split="test", condition=c, limit=3, threads=1)
               for c in ("clean", "eye-mosaic", "keyed-permutation")}
    assert reports["clean"]["faces_found"] == 3 and reports["eye-mosaic"]["condition"] == "eye-mosaic"
    assert reports["keyed-permutation"]["faces_found"] == 0  # noise to the detector without the key
    assert reports["eye-mosaic"]["band_reference"] == "mtcnn"
    # evaluation runs the pipeline a platform receiving such pictures runs: the card's thresholds for the condition
    from agescan import AgeEstimator
    from agescan.models import DEFAULT_MODEL

    for cond in ("clean", "eye-mosaic"):
        triage = evaluate_folder(DEFAULT_MODEL, UTKFACE, split="val", condition=cond, limit=2, threads=1)["triage"]
        est = AgeEstimator(condition="" if cond == "clean" else cond)
        assert (triage["flag_threshold"], triage["refer_interval"]) == \
            (est.flag_threshold, est.decider.calibration.refer_interval)
    assert triage["flag_threshold"] != AgeEstimator().flag_threshold

