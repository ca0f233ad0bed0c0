"""The age-check decision (agescan.agecheck): pass, fail, refer and their reasons, from real distributions."""

from __future__ import annotations

import numpy as np
import pytest

from agescan import InputError
from agescan.agecheck import DEFAULT_MAX_ERROR, AgeCheckPolicy
from agescan.types import AgeDistribution, BBox, FaceResult, ImageResult, Landmarks5, Provenance


def _face(ages: np.ndarray, x: float = 0.0, side: float = 120.0) -> FaceResult:
    """A face whose age distribution is a normal of the given (mean, sd) over 0..100."""
    mean, sd = ages
    probs = np.exp(-0.5 * ((np.arange(101) - mean) / sd) ** 2)
    d = AgeDistribution.from_array(probs)
    lm = Landmarks5(((x + 30, 40), (x + 90, 40), (x + 60, 70), (x + 40, 95), (x + 80, 95)))
    return FaceResult(BBox(x, 0, x + side, side), lm, 0.99, d.mean(), d, d.interval(0.9), 0.9, d.p_below(18), 18,
                      "x", "m")


def _result(*faces) -> ImageResult:
    return ImageResult(Provenance("<upload>", ""), 640, 480, tuple(faces))


@pytest.mark.parametrize("ages, threshold, challenge, decision, reason", [
    ((40, 3), 18, 0, "pass", "over"),
    ((8, 2), 18, 0, "fail", "under"),
    ((18, 3), 18, 0, "refer", "uncertain"),
    ((15, 1), 13, 0, "pass", "over"),
    ((22, 1.5), 18, 25, "refer", "under_challenge_age"),  # surely over 18, yet under the challenge age
    ((40, 3), 18, 25, "pass", "over"),
])
def test_decisions(ages, threshold, challenge, decision, reason):
    check = AgeCheckPolicy(threshold, challenge).decide(_result(_face(np.array(ages))))
    assert (check.decision, check.reason) == (decision, reason)
    assert check.p_under == pytest.approx(check.face.distribution.p_below(threshold))
    d = check.to_dict()
    assert d["decision"] == decision and d["faces"] == 1 and d["policy"]["max_error"] == DEFAULT_MAX_ERROR
    assert d["message"] and d["interval"][0] <= d["age"] <= d["interval"][1]


def test_photos_that_cannot_be_judged_are_referred():
    policy = AgeCheckPolicy(18)
    adult = np.array((40, 3))
    for result, reason in ((_result(), "no_face"),
                           (_result(_face(adult), _face(adult, x=200, side=80)), "several_faces"),
                           (_result(_face(adult, side=30)), "poor_quality")):
        check = policy.decide(result)
        assert (check.decision, check.reason, check.face, check.p_under) == ("refer", reason, None, None)
        assert check.to_dict()["age"] is None
    # a face in the background, less than half the size of the subject's, does not make the photo ambiguous
    check = policy.decide(_result(_face(adult), _face(np.array((8, 2)), x=300, side=40)))
    assert (check.decision, check.face.age) == ("pass", pytest.approx(40, abs=0.5))


def test_policy_validation_uses_the_one_template():
    with pytest.raises(InputError, match="The 'threshold' parameter of AgeCheckPolicy must be an integer"):
        AgeCheckPolicy(17.5)
    with pytest.raises(InputError, match="'challenge_age' parameter of AgeCheckPolicy must be a number in \\[18.0"):
        AgeCheckPolicy(18, 12)
    with pytest.raises(InputError, match="'max_error'"):
        AgeCheckPolicy(18, max_error=0.7)
