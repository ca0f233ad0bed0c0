"""The triage decision per face: flag it for review unless the model is sure the person is an adult, or when its
point age is under a challenge age (the retail "Challenge 25" rule).

The threshold is a property of the model: its card's calibration slot holds the one chosen on val by
``agescan train calibrate`` (:mod:`agescan.decisions`), and :class:`agescan.AgeEstimator` uses it unless
``flag_threshold`` is given. The rule that chooses it: a forensic triage must not let children through, and reviewing
a flagged adult costs far less than missing a child, so the threshold is the largest that lets at most 1% of the
val minors pass, end to end through the pipeline, on clean faces and on faces with the eye band (the smaller of the
two, rounded down). A face passes (is not flagged) when its calibrated P(minor) is under the threshold and, for a card
with the refer interval, its conformal interval of level 1 - 2 x threshold lies at or above the minor age.
:data:`DEFAULT_FLAG_THRESHOLD` (0.023, chosen by the same rule before calibration existed) applies to a card without
one. Test-split numbers: docs/calibration.md. The challenge age is off by default: on the test split "estimated
under 25" catches fewer 13-17-year-olds than the threshold catches minors, while flagging more adults.

The flag is decided here and nowhere else: :class:`agescan.AgeEstimator` calls :func:`is_flagged` once per face and
the face result carries it (``FaceResult.flagged``) into every output: JSON, CSV, the results store, the report.
"""

from __future__ import annotations

#: Flag a face when P(age < minor age) >= this, for a model card without its own threshold (the default model's
#: before calibration; chosen on val: at most 1% of minors pass, clean or banded).
DEFAULT_FLAG_THRESHOLD = 0.023
#: Also flag a face whose point age is under this (0 = off).
DEFAULT_CHALLENGE_AGE = 0.0
#: The rule (threshold, challenge age) of results scanned before agescan stored the flag with each face (results
#: databases of schema 1 and 2, run keys without "flag_threshold"): the defaults of that time. Their faces are
#: flagged by it when a database is upgraded, and read with it as they are.
LEGACY_RULE = (0.026, 0.0)


def is_flagged(p_minor: float, age: float, threshold: float = DEFAULT_FLAG_THRESHOLD,
               challenge_age: float = DEFAULT_CHALLENGE_AGE, *, refer_lo: float | None = None,
               minor_age: float = 18) -> bool:
    """True when a face goes to the reviewer: P(minor) >= ``threshold``, or point age < ``challenge_age``, or the
    lower end ``refer_lo`` of its interval of level 1 - 2 x ``threshold`` lies below ``minor_age`` (the refer rule of
    :mod:`agescan.decisions`, for a model card with ``refer_interval``: a face is left out of review only when the
    model is sure it is an adult)."""
    return p_minor >= threshold or age < challenge_age or (refer_lo is not None and refer_lo < minor_age)


def check_triage(threshold: float, challenge_age: float, owner: str = "the triage rule") -> None:
    """Refuse values that would silently flag nothing or everything (:class:`~agescan.errors.InputError`)."""
    from agescan._validation import check_number

    check_number(threshold, "flag_threshold", owner, lo=0.0, hi=1.0, lo_open=True)
    check_number(challenge_age, "challenge_age", owner, lo=0.0, hi=100.0)
