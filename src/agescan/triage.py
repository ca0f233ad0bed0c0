"""The triage decision per face: flag it for review when P(minor) reaches a threshold, or when its point age is
under a challenge age (the retail "Challenge 25" rule). Every surface uses these defaults.

Why these defaults, from `agescan evaluate` on UTKFace with the default model (docs/benchmarks.md): a forensic
triage must not let children through, and reviewing a flagged adult costs far less than missing a child. The
threshold was chosen on the *val* split as the largest P(minor) that lets at most 1% of minors pass on clean
faces and on faces with the eye band, end to end through the default pipeline (`resnet10x2-ocl.utkface` behind
the `yunet-s-ocl.utkface` detector: 0.0363 and 0.0236, the lower one rounded down; 0.026 before the detector
changed, when faces MTCNN missed were aligned by template); the test split's recall and adults flagged at it are
in docs/benchmarks.md. A model with another
calibration needs its own threshold (`--flag-threshold`, chosen the same way with `agescan evaluate --split val`).
The challenge age is off by default: on the test split "estimated under 25" catches fewer 13-17-year-olds than
the threshold catches minors, while flagging more adults; set it (e.g. 25) to add the retail rule.
"""

from __future__ import annotations

#: Flag a face when P(age < minor age) >= this (chosen on val: at most 1% of minors pass, clean or banded).
DEFAULT_FLAG_THRESHOLD = 0.023
#: Also flag a face whose point age is under this (0 = off).
DEFAULT_CHALLENGE_AGE = 0.0


def is_flagged(p_minor: float, age: float, threshold: float = DEFAULT_FLAG_THRESHOLD,
               challenge_age: float = DEFAULT_CHALLENGE_AGE) -> bool:
    """True when a face goes to the reviewer: P(minor) >= ``threshold`` or point age < ``challenge_age``."""
    return p_minor >= threshold or age < challenge_age


def check_triage(threshold: float, challenge_age: float) -> None:
    """Refuse values that would silently flag nothing or everything."""
    from agescan.errors import ConfigError

    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"The flag threshold is a probability in (0, 1]. Got {threshold}.")
    if not 0.0 <= challenge_age <= 100.0:
        raise ConfigError(f"The challenge age is in years, 0 (off) to 100. Got {challenge_age}.")
