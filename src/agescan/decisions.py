"""One definition of what agescan says about a face, from the model's age distribution.

Every surface (``AgeEstimator`` and through it the CLI, scans, reports and the service; ``agescan evaluate``; training's
validation metrics) takes these decisions here and nowhere else:

- **point age**: read from the model's own distribution over whole years by the card's rule
  (:data:`POINT_RULES`, ``Calibration.point``): its **mean** (DEX: ``sum_k k * p_k``; the rule of a card without a
  calibration, and the papers' protocols) or its **median** (the 0.5-quantile, which minimises the expected
  absolute error, the error MAE counts; ``agescan train calibrate`` chooses between them on val);
- **calibrated distribution**: the model's probabilities raised to ``1 / T`` and renormalised (temperature scaling),
  with ``T`` fitted on the validation split and stored in the model card (:class:`Calibration`); P(age < t) for any t
  is read from it. The point age stays read from the model's own distribution: calibration changes how sure the
  model says it is, never its estimate;
- **interval**: the central interval of the (calibrated) distribution, with mass spread uniformly over
  ``[k - 0.5, k + 0.5]`` for bin ``k``. Without conformal data it holds the requested ``level`` of the mass; with
  them (split-conformal, Mondrian by predicted age band, fitted on val) it holds the mass that covered ``level`` of
  the validation faces of the face's predicted band, so coverage is guaranteed per band for exchangeable data;
- **P(age < t)**: the calibrated mass of the whole-year bins below ``t`` (P(age < 18) sums the bins 0..17);
- **age group**: the paper's groups of the point age (:data:`AGE_GROUPS`);
- **verdict against an age t with error e** (the refer rule): ``over`` when the calibrated P(age < t) <= e and, with
  the card's ``refer_interval``, the interval of level 1 - 2e (tails of e on each side, conformal per predicted band)
  lies at or above t; ``under`` when P(age >= t) <= e and that interval lies below t; ``unsure`` (refer, review)
  otherwise. The probability says how sure the model is; the conformal interval checks it against how often faces of
  that predicted age were covered on val, so a band where the model is overconfident needs more than its own word.
  The scan flag is "not over" at t = the minor age with e = the flag threshold (the model card's unless given); the
  age check passes "over", fails "under" and refers "unsure" with e = its ``max_error``.

Pure NumPy, vectorised over rows of probabilities (N x bins); one face is a 1-row array.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from agescan.errors import ConfigError

#: Age groups of the main paper (Chaves et al.) plus an adult remainder; upper bounds inclusive.
AGE_GROUPS: tuple[tuple[str, int, int], ...] = (
    ("0-5", 0, 5),
    ("6-10", 6, 10),
    ("11-15", 11, 15),
    ("16-17", 16, 17),
    ("18-25", 18, 25),
    ("26+", 26, 200),
)
#: The version of the card's calibration slot this agescan writes and reads.
CALIBRATION_VERSION = 1
#: Nominal levels at which conformal masses are stored; a requested level uses the smallest stored one at or above
#: it (coverage can only be higher), and a level above the last gets the whole distribution.
CONFORMAL_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
#: Candidate bands of predicted age for Mondrian conformal intervals; a band with fewer than
#: :data:`MIN_BAND_FACES` calibration faces is merged into its neighbour.
CONFORMAL_BANDS = ((0, 5), (6, 10), (11, 15), (16, 20), (21, 25), (26, 40), (41, 60), (61, 200))
MIN_BAND_FACES = 100


def age_group(age: float) -> str:
    """The paper's age-group label for a (possibly fractional) age; ages are floored first (17.9 is "16-17").

    Example:
        >>> age_group(17.9)
        '16-17'
    """
    years = int(math.floor(max(age, 0.0)))
    for name, lo, hi in AGE_GROUPS:
        if lo <= years <= hi:
            return name
    return AGE_GROUPS[-1][0]


def _rows(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    return p[None] if p.ndim == 1 else p


def point_age(probs, min_age: int = 0) -> np.ndarray:
    """Expected age in years per row (a one-hot bin ``k`` gives exactly ``k``)."""
    p = _rows(probs)
    return p @ np.arange(min_age, min_age + p.shape[1], dtype=np.float64)


#: How the point age is read from the model's own distribution (``Calibration.point``): "mean" (DEX's expected
#: value) or "median" (the 0.5-quantile of :func:`quantile`; a one-hot bin ``k`` gives exactly ``k`` either way).
POINT_RULES = ("mean", "median")


def point_estimate(probs, rule: str = "mean", min_age: int = 0) -> np.ndarray:
    """The point age per row by ``rule`` (:data:`POINT_RULES`).

    Example:
        >>> p = np.zeros(101); p[[10, 11, 40]] = [0.3, 0.3, 0.4]
        >>> float(point_estimate(p)[0]), float(point_estimate(p, "median")[0])
        (22.3, 11.166666666666666)
    """
    if rule == "mean":
        return point_age(probs, min_age)
    if rule == "median":
        return quantile(probs, 0.5, min_age)
    raise ConfigError(f"Unknown point-age rule {rule!r}; use one of {', '.join(POINT_RULES)}.")


def temper(probs, temperature: float) -> np.ndarray:
    """Temperature scaling of distributions: ``p ** (1 / T)`` renormalised per row (T > 1 spreads, T < 1 sharpens;
    T = 1 returns the rows unchanged)."""
    p = _rows(probs)
    if temperature == 1.0:
        return p.copy()
    with np.errstate(divide="ignore"):
        logp = np.log(np.clip(p, 0.0, None)) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def quantile(probs, q, min_age: int = 0) -> np.ndarray:
    """The ``q``-quantile per row in years (``q`` a scalar or one value per row), mass spread uniformly over
    ``[k - 0.5, k + 0.5]`` for bin ``k``: centring bins on their label keeps quantiles consistent with the mean."""
    p = _rows(probs)
    n, b = p.shape
    q = np.broadcast_to(np.asarray(q, dtype=np.float64), (n,))
    cdf = np.cumsum(p, axis=1)
    k = np.minimum((cdf < q[:, None]).sum(axis=1), b - 1)
    rows = np.arange(n)
    prev = np.where(k > 0, cdf[rows, np.maximum(k - 1, 0)], 0.0)
    within = (q - prev) / np.maximum(cdf[rows, k] - prev, 1e-12)
    return min_age + k + np.clip(within, 0.0, 1.0) - 0.5


def central_interval(probs, mass, min_age: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The central interval holding ``mass`` (scalar or per row, in (0, 1]) of each row's distribution, in years;
    the lower end is never below ``min_age``. A mass of 1 is the whole age range (the model's support may end
    sooner, but a conformal mass of 1 says its tails cannot be trusted)."""
    p = _rows(probs)
    mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), (len(p),))
    tail = (1.0 - mass) / 2.0
    lo = np.maximum(quantile(p, tail, min_age), float(min_age))
    hi = quantile(p, 1.0 - tail, min_age)
    whole = mass >= 1.0
    lo = np.where(whole, float(min_age), lo)
    hi = np.where(whole, min_age + p.shape[1] - 0.5, hi)
    return lo, np.maximum(hi, lo)


def cdf_at(probs, ages, min_age: int = 0) -> np.ndarray:
    """The interpolated CDF of each row at its age (the inverse of :func:`quantile`)."""
    p = _rows(probs)
    n, b = p.shape
    y = np.broadcast_to(np.asarray(ages, dtype=np.float64), (n,)) - min_age
    k = np.clip(np.floor(y + 0.5).astype(np.int64), 0, b - 1)
    cdf = np.cumsum(p, axis=1)
    rows = np.arange(n)
    prev = np.where(k > 0, cdf[rows, np.maximum(k - 1, 0)], 0.0)
    frac = np.clip(y - (k - 0.5), 0.0, 1.0)
    return prev + frac * p[rows, k]


def central_score(probs, ages, min_age: int = 0) -> np.ndarray:
    """Conformity score of a true age: the smallest central mass whose interval contains it, ``|2 F(age) - 1|``."""
    return np.abs(2.0 * cdf_at(probs, ages, min_age) - 1.0)


def p_below(probs, age: float, min_age: int = 0) -> np.ndarray:
    """P(true age < ``age``) per row, counting whole years: P(age < 18) sums the bins 0..17."""
    p = _rows(probs)
    k = max(0, min(int(math.ceil(age)) - min_age, p.shape[1]))
    return p[:, :k].sum(axis=1)


def band_index(ages, bands) -> np.ndarray:
    """Index of the band (inclusive whole-year ranges, ordered) each (floored) age falls in; ages between bands
    go to the band below, ages past the last to the last."""
    a = np.floor(np.asarray(ages, dtype=np.float64))
    starts = np.array([lo for lo, _ in bands], dtype=np.float64)
    return np.clip(np.searchsorted(starts, a, side="right") - 1, 0, len(bands) - 1)


@dataclass(frozen=True)
class Conformal:
    """Mondrian split-conformal masses: ``mass[b][j]`` is the central mass of the calibrated distribution that
    covers ``levels[j]`` of the calibration faces whose point age falls in ``bands[b]`` (``n[b]`` faces)."""

    bands: tuple[tuple[int, int], ...]
    levels: tuple[float, ...]
    mass: tuple[tuple[float, ...], ...]
    n: tuple[int, ...]
    score: str = "central-mass"

    def __post_init__(self) -> None:
        if self.score != "central-mass":
            raise ConfigError(f"Conformal calibration: unknown score {self.score!r}; upgrade agescan to read it.")
        if not self.bands or len(self.mass) != len(self.bands) or len(self.n) != len(self.bands):
            raise ConfigError("Conformal calibration: bands, mass and n must have one entry per band.")
        if any(len(m) != len(self.levels) for m in self.mass) or list(self.levels) != sorted(self.levels):
            raise ConfigError("Conformal calibration: one mass per (sorted) level in every band.")

    def masses(self, level: float, point_ages) -> np.ndarray:
        """The central mass giving at least ``level`` coverage for faces of these point ages."""
        j = next((i for i, lv in enumerate(self.levels) if lv >= level - 1e-9), None)
        b = band_index(point_ages, self.bands)
        if j is None:
            return np.ones(len(b))
        return np.array([self.mass[i][j] for i in b], dtype=np.float64)

    def to_dict(self) -> dict:
        return {"score": self.score, "bands": [list(b) for b in self.bands], "levels": list(self.levels),
                "mass": [list(m) for m in self.mass], "n": list(self.n)}

    @classmethod
    def from_dict(cls, d: dict) -> "Conformal":
        return cls(bands=tuple((int(lo), int(hi)) for lo, hi in d["bands"]),
                   levels=tuple(float(v) for v in d["levels"]),
                   mass=tuple(tuple(float(v) for v in m) for m in d["mass"]), n=tuple(int(v) for v in d["n"]),
                   score=d.get("score", "central-mass"))


def fit_conformal(probs, ages, point_ages, min_age: int = 0, levels=CONFORMAL_LEVELS, bands=CONFORMAL_BANDS,
                  min_faces: int = MIN_BAND_FACES) -> Conformal:
    """Fit Mondrian split-conformal masses on calibration faces (their calibrated distributions, true ages and point
    ages). Candidate bands with fewer than ``min_faces`` faces are merged into the next (the last into the one
    before). The mass for level L in a band of n faces is the ceil((n + 1) L)-th smallest score, or 1 (the whole
    distribution) when that exceeds n."""
    scores = central_score(probs, ages, min_age)
    pa = np.floor(np.asarray(point_ages, dtype=np.float64))
    merged: list[list[int]] = []
    for lo, hi in bands:
        if merged and int(((pa >= merged[-1][0]) & (pa <= merged[-1][1])).sum()) < min_faces:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi])
    while len(merged) > 1 and int(((pa >= merged[-1][0]) & (pa <= merged[-1][1])).sum()) < min_faces:
        last = merged.pop()
        merged[-1][1] = last[1]
    out_bands = tuple((lo, hi) for lo, hi in merged)
    idx = band_index(pa, out_bands)
    masses, counts = [], []
    for b in range(len(out_bands)):
        s = np.sort(scores[idx == b])
        n = len(s)
        row = []
        for level in levels:
            k = int(math.ceil((n + 1) * level))
            row.append(1.0 if k > n or n == 0 else round(float(min(s[k - 1] + 1e-6, 1.0)), 6))
        masses.append(tuple(row))
        counts.append(n)
    return Conformal(out_bands, tuple(levels), tuple(masses), tuple(counts))


def binary_nll(p, y) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))


#: The ages whose P(age < t) the temperature is fitted for (the triage and age-check thresholds).
FIT_THRESHOLDS = (13, 16, 18)


def fit_temperature(probs, ages, min_age: int = 0, thresholds=FIT_THRESHOLDS) -> float:
    """The temperature minimising the mean binary log loss of P(age < t) over ``thresholds`` (a grid from 0.5 to 4
    in steps of 0.01: one parameter, no optimiser to trust)."""
    ages = np.asarray(ages, dtype=np.float64)
    best_t, best = 1.0, float("inf")
    for t in np.round(np.arange(0.5, 4.0001, 0.01), 2):
        q = temper(probs, float(t))
        loss = np.mean([binary_nll(p_below(q, a, min_age), ages < a) for a in thresholds])
        if loss < best - 1e-12:
            best_t, best = float(t), loss
    return best_t


@dataclass(frozen=True)
class Calibration:
    """The model card's calibration slot (``ModelCard.calibration``, versioned by ``version``).

    Attributes:
        temperature: temperature of :func:`temper` (1 = the model's own probabilities).
        conformal: Mondrian conformal masses (:class:`Conformal`), or None: intervals hold the nominal mass.
        flag_threshold: the scan's triage threshold on calibrated P(minor) (0 = agescan's default).
        max_error: the age check's largest P(under) for a pass and P(over) for a fail (0 = agescan's default).
        refer_interval: the verdict also requires the interval of level 1 - 2e on the right side of the age
            (False: the probability alone).
        point: how the point age is read from the model's own distribution (:data:`POINT_RULES`; "mean" when
            the card has no calibration).
        conditions: thresholds fitted for pictures that went through a registered privacy transform, by its name:
            {name: {"flag_threshold", "max_error", "refer_interval"}} (the temperature, conformal masses and point
            rule are shared). :meth:`for_condition` applies them; a condition absent here uses the main ones.
        fitted_on: where and how it was fitted (data, split, conditions, faces, rows sha256, command, date).
        rules: how the thresholds were chosen, in words.
    """

    temperature: float = 1.0
    conformal: Conformal | None = None
    flag_threshold: float = 0.0
    max_error: float = 0.0
    refer_interval: bool = False
    point: str = "mean"
    conditions: dict = field(default_factory=dict)
    fitted_on: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    version: int = CALIBRATION_VERSION

    def __post_init__(self) -> None:
        if self.version > CALIBRATION_VERSION:
            raise ConfigError(f"Model card calibration version {self.version} is newer than this agescan reads "
                              f"({CALIBRATION_VERSION}); upgrade agescan.")
        if not 0.05 <= self.temperature <= 20:
            raise ConfigError(f"Model card calibration: temperature must be in [0.05, 20]. Got {self.temperature!r}.")
        for name in ("flag_threshold", "max_error"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"Model card calibration: {name} must be in [0, 1). Got {v!r}.")
        for name, c in self.conditions.items():
            if set(c) != {"flag_threshold", "max_error", "refer_interval"} or not all(
                    0.0 <= c[k] < 1.0 for k in ("flag_threshold", "max_error")):
                raise ConfigError(f"Model card calibration: condition {name!r} needs flag_threshold and max_error in "
                                  f"[0, 1) and refer_interval. Got {c!r}; upgrade agescan to read it.")
        if self.point not in POINT_RULES:
            raise ConfigError(f"Model card calibration: point must be one of {', '.join(POINT_RULES)}. Got "
                              f"{self.point!r}; upgrade agescan to read it.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["conformal"] = self.conformal.to_dict() if self.conformal else None
        return d

    def for_condition(self, condition: str) -> "Calibration":
        """This calibration with the thresholds and rule fitted for pictures that went through the privacy
        transform ``condition`` (registered name), or unchanged when the card has none for it ("" = none)."""
        c = self.conditions.get(condition)
        if c is None:
            return self
        return replace(self, flag_threshold=float(c["flag_threshold"]), max_error=float(c["max_error"]),
                       refer_interval=bool(c["refer_interval"]))

    @classmethod
    def from_dict(cls, d: dict | None) -> "Calibration":
        """Read a card's slot; an empty slot (cards written before calibration existed) is the identity."""
        if not d:
            return cls()
        d = dict(d)
        known = {"temperature", "conformal", "flag_threshold", "max_error", "refer_interval", "point", "conditions",
                 "fitted_on", "rules", "version"}
        if set(d) - known:
            raise ConfigError(f"Model card calibration has unknown fields {sorted(set(d) - known)}; upgrade agescan.")
        d["conformal"] = Conformal.from_dict(d["conformal"]) if d.get("conformal") else None
        return cls(**d)


VERDICTS = ("over", "under", "unsure")


@dataclass(frozen=True)
class Decisions:
    """Everything said about a batch of faces (arrays, one entry per row)."""

    age: np.ndarray
    probs: np.ndarray  # calibrated distributions
    lo: np.ndarray
    hi: np.ndarray
    p_minor: np.ndarray


class Decider:
    """The decisions for one model: its card's ``min_age`` and calibration.

    Args:
        min_age: the age of the first output bin.
        calibration: the card's calibration (None or an empty slot: the model's own probabilities, nominal intervals).
        calibrated: False to ignore the calibration (what fitting a new one starts from).
    """

    def __init__(self, min_age: int = 0, calibration: Calibration | None = None, calibrated: bool = True):
        self.min_age = int(min_age)
        self.calibration = calibration if (calibration is not None and calibrated) else Calibration()

    def calibrate(self, probs) -> np.ndarray:
        return temper(probs, self.calibration.temperature)

    def interval(self, probs, point_ages, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The reported interval at ``level`` of calibrated ``probs`` (conformal when the card has it)."""
        conf = self.calibration.conformal
        mass = conf.masses(level, point_ages) if conf is not None else level
        return central_interval(probs, mass, self.min_age)

    def decide(self, raw_probs, minor_age: int = 18, level: float = 0.9) -> Decisions:
        raw = _rows(raw_probs)
        age = point_estimate(raw, self.calibration.point, self.min_age)
        probs = self.calibrate(raw)
        lo, hi = self.interval(probs, age, level)
        return Decisions(age, probs, lo, hi, p_below(probs, minor_age, self.min_age))

    def refer_low(self, probs, point_ages, error: float) -> np.ndarray:
        """Lower ends of the refer rule's intervals (level 1 - 2 ``error``) of calibrated ``probs``; +inf without
        ``refer_interval`` (no interval to agree with: the probability alone decides, as in :meth:`verdict`)."""
        if not self.calibration.refer_interval:
            return np.full(len(_rows(probs)), np.inf)
        return self.interval(probs, point_ages, max(1.0 - 2.0 * error, 1e-6))[0]

    def verdict(self, probs, point_ages, age: float, max_error: float) -> np.ndarray:
        """The refer rule against ``age`` (module docstring): "over", "under" or "unsure" per row of calibrated
        ``probs``."""
        p = p_below(probs, age, self.min_age)
        over, under = p <= max_error, 1.0 - p <= max_error
        if self.calibration.refer_interval:
            lo, hi = self.interval(probs, point_ages, max(1.0 - 2.0 * max_error, 1e-6))
            over &= lo >= age
            under &= hi < age
        return np.where(over, "over", np.where(under, "under", "unsure"))
