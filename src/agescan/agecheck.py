"""The age-check decision: pass, fail or refer a person against an age threshold, from one face's age distribution.

Age assurance (Yoti, NIST FATE age estimation, ISO/IEC 27566-1) does not trust a point estimate near the threshold:
estimates err by years, so a check admits only people who look clearly over it and refers the rest to another
method (an ID document, a parent's confirmation). With ``threshold`` T (13, 16, 18, ...):

- **pass** when P(age < T) <= ``max_error`` (calibrated, :mod:`agescan.decisions`), the interval of level
  1 - 2 x ``max_error`` lies at or above T (for a model card with the refer interval), and, with a challenge age C,
  the point age is at least C (the retail "Challenge 25" rule for 18: anyone who looks under 25 is asked for ID);
- **fail** when P(age >= T) <= ``max_error`` and that interval lies below T: the model is as sure the person is under
  T as a pass needs it to be sure they are over (a young child at an 18+ check);
- **refer** otherwise, and whenever the photo cannot be judged: **no face**, **several faces** (a second face at least
  half the size of the largest: whose age would be checked?), or a face too small to judge (**poor quality**: the
  face box's shorter side under ``min_face_px``).

``max_error`` is a property of the model: its card's (``AgeEstimator.max_error``), chosen by ``agescan train calibrate``
on UTKFace's val split as the largest value that lets at most 1% of the people under T pass, for T = 13, 16 and 18,
on clean faces and on faces with the eye band drawn before the pipeline, or given to it from
benchmarks/age_check_policies.py's choice through the service's flows (the default model's 0.02);
:data:`DEFAULT_MAX_ERROR` (0.01, the default model's choice before calibration) for a card without one.
The test split's rates are in docs/benchmarks.md ("Age checks") and docs/calibration.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from agescan._validation import check_number
from agescan.types import FaceResult, ImageResult

#: Pass (fail) only when the model puts at most this probability on the person being under (over) the threshold.
DEFAULT_MAX_ERROR = 0.01
#: A face whose box's shorter side is smaller than this (pixels) is too small to judge.
DEFAULT_MIN_FACE_PX = 48
#: A second face at least this fraction of the largest face's size makes the photo ambiguous.
SECOND_FACE_RATIO = 0.5

DECISIONS = ("pass", "fail", "refer")
#: Why a decision was taken: reason -> (decision, a message for the person checked).
REASONS = {
    "over": ("pass", "Estimated clearly over the age threshold."),
    "under": ("fail", "Estimated clearly under the age threshold."),
    "uncertain": ("refer", "The estimate is too close to the threshold to decide; another check is needed."),
    "under_challenge_age": ("refer", "Estimated under the challenge age; another check is needed."),
    "no_face": ("refer", "No face was found; retake the photo facing the camera, or use another check."),
    "several_faces": ("refer", "Several faces were found; retake the photo with only the person to check."),
    "poor_quality": ("refer", "The face is too small to judge; retake the photo closer to the camera."),
}


@dataclass(frozen=True)
class AgeCheckPolicy:
    """How an age check decides (see the module's docstring).

    Args:
        threshold: the age to check against, in years (13, 16, 18, ...).
        challenge_age: also require a point age of at least this to pass (0 = off; else at least ``threshold``).
        max_error: the largest P(under) a pass accepts, and the largest P(over) a fail accepts.
        min_face_px: refer faces whose box's shorter side is smaller than this.
    """

    threshold: int
    challenge_age: float = 0.0
    max_error: float = DEFAULT_MAX_ERROR
    min_face_px: float = DEFAULT_MIN_FACE_PX

    def __post_init__(self) -> None:
        owner = "AgeCheckPolicy"
        check_number(self.threshold, "threshold", owner, lo=1, hi=100, integer=True)
        check_number(self.challenge_age, "challenge_age", owner, lo=0.0, hi=100.0)
        if self.challenge_age and self.challenge_age < self.threshold:
            check_number(self.challenge_age, "challenge_age", owner, lo=float(self.threshold), hi=100.0)
        check_number(self.max_error, "max_error", owner, lo=0.0, hi=0.5, lo_open=True, hi_open=True)
        check_number(self.min_face_px, "min_face_px", owner, lo=0.0, hi=10_000.0)

    def subject(self, result: ImageResult) -> tuple[str, FaceResult | None]:
        """("", the face to judge) or (the reason no face can be judged, None)."""
        if not result.faces:
            return "no_face", None
        side = lambda f: min(f.box.width, f.box.height)  # noqa: E731
        faces = sorted(result.faces, key=side, reverse=True)
        if len(faces) > 1 and side(faces[1]) >= SECOND_FACE_RATIO * side(faces[0]):
            return "several_faces", None
        if side(faces[0]) < self.min_face_px:
            return "poor_quality", None
        return "", faces[0]

    def decide(self, result: ImageResult, decider=None) -> "AgeCheck":
        """The decision for the person in ``result`` (an :class:`~agescan.ImageResult` of one photo), by the refer
        rule of :mod:`agescan.decisions` (``decider``: the model's, ``AgeEstimator.decider``, whose card says
        whether the refer interval is required; None: the probability alone)."""
        from agescan.decisions import Decider

        reason, face = self.subject(result)
        p_under = face.distribution.p_below(self.threshold) if face is not None else None
        if face is not None:
            decider = decider or Decider(face.distribution.min_age)
            verdict = decider.verdict(face.distribution.as_array(), [face.age], self.threshold, self.max_error)[0]
            if verdict == "over":
                reason = "over" if face.age >= self.challenge_age else "under_challenge_age"
            else:
                reason = {"under": "under", "unsure": "uncertain"}[verdict]
        return AgeCheck(REASONS[reason][0], reason, self, len(result.faces), face, p_under)


@dataclass(frozen=True)
class AgeCheck:
    """The outcome of one age check: the decision, why, and the face and probability it rests on (``face`` and
    ``p_under`` are None when no single face could be judged)."""

    decision: str
    reason: str
    policy: AgeCheckPolicy
    n_faces: int
    face: FaceResult | None
    p_under: float | None

    @property
    def message(self) -> str:
        return REASONS[self.reason][1]

    def to_dict(self) -> dict:
        """The JSON-ready record (schema ``agescan.age-check/1``), without the image's provenance."""
        f = self.face
        return {"schema": "agescan.age-check/1", "decision": self.decision, "reason": self.reason,
                "message": self.message, "threshold": self.policy.threshold,
                "challenge_age": self.policy.challenge_age or None,
                "p_under": None if self.p_under is None else round(self.p_under, 4),
                "age": None if f is None else round(f.age, 2),
                "interval": None if f is None else [round(f.interval[0], 2), round(f.interval[1], 2)],
                "interval_level": None if f is None else f.interval_level,
                "faces": self.n_faces,
                "face": None if f is None else {"box": [round(v, 1) for v in f.box.as_tuple()],
                                                "detector_score": round(f.detector_score, 4)},
                "policy": asdict(self.policy)}
