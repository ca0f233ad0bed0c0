"""agescan.decisions: one definition of point age, interval, P(age < t), calibration and the refer rule."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from agescan import AgeEstimator, ConfigError
from agescan import decisions as D
from agescan.models import DEFAULT_MODEL, create_model
from agescan.models.card import ModelCard
from agescan.types import AgeDistribution


def _gauss(centres, sds, bins: int = 101) -> np.ndarray:
    a = np.arange(bins)[None]
    p = np.exp(-0.5 * ((a - np.asarray(centres, float)[:, None]) / np.asarray(sds, float)[:, None]) ** 2)
    return p / p.sum(1, keepdims=True)


def test_vectorised_rules_are_the_distribution_methods():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(101, 0.3), size=40)
    probs[0] = np.eye(101)[17]
    lo, hi = D.central_interval(probs, 0.9)
    for i, p in enumerate(probs):
        d = AgeDistribution.from_array(p)
        assert (lo[i], hi[i]) == pytest.approx(d.interval(0.9), abs=1e-9)
        assert D.point_age(p)[0] == pytest.approx(d.mean())
        assert D.p_below(p, 18)[0] == pytest.approx(d.p_below(18)) == pytest.approx(p[:18].sum())
    assert D.point_age(probs[0])[0] == 17 and D.p_below(probs[0], 18)[0] == 1 and D.p_below(probs[0], 17)[0] == 0


def test_score_is_the_smallest_covering_mass():
    rng = np.random.default_rng(1)
    probs = _gauss(rng.uniform(2, 80, 200), rng.uniform(1, 8, 200))
    ages = rng.integers(1, 90, 200)
    s = D.central_score(probs, ages)
    lo, hi = D.central_interval(probs, np.minimum(s + 1e-9, 1.0))
    assert np.all((ages >= lo - 1e-6) & (ages <= hi + 1e-6))
    lo, hi = D.central_interval(probs, np.maximum(s - 1e-3, 1e-6))
    inside = (ages >= lo) & (ages <= hi)
    assert not inside[s > 0.01].any()  # any smaller mass misses the age


def test_temperature_is_fitted_back():
    """Ages drawn from wide distributions, reported twice too sharp: the fit finds T close to the spread."""
    rng = np.random.default_rng(2)
    n = 4000
    centres, sd = rng.uniform(3, 60, n), 4.0
    true = np.clip(np.round(centres + rng.normal(0, sd, n)), 0, 100)
    reported = _gauss(centres, np.full(n, sd / np.sqrt(2)))  # p ** 2, renormalised: T = 0.5 of the truth
    t = D.fit_temperature(reported, true)
    assert 1.7 < t < 2.3
    assert D.temper(reported, 1.0) == pytest.approx(reported)
    assert D.temper(reported[:1], 2.0) == pytest.approx(_gauss(centres[:1], [sd]), abs=1e-9)


def test_mondrian_conformal_covers_each_band_where_nominal_intervals_do_not():
    """Children's distributions too narrow, adults' too wide: nominal 90% intervals under-cover children and
    over-cover adults; masses fitted per band on one half bring each band to 90% on the other."""
    rng = np.random.default_rng(3)
    n = 12000
    centres = np.where(rng.random(n) < 0.4, rng.uniform(1, 10, n), rng.uniform(30, 70, n))
    true_sd = np.where(centres < 15, 3.0, 4.0)
    reported_sd = np.where(centres < 15, 1.5, 8.0)
    true = np.clip(np.round(centres + rng.normal(0, true_sd)), 0, 100)
    probs = _gauss(centres, reported_sd)
    point = D.point_age(probs)
    fit, test = np.arange(n) < n // 2, np.arange(n) >= n // 2
    conf = D.fit_conformal(probs[fit], true[fit], point[fit])
    decider = D.Decider(0, D.Calibration(conformal=conf))
    lo, hi = decider.interval(probs[test], point[test], 0.9)
    nlo, nhi = D.central_interval(probs[test], 0.9)
    child = point[test] < 15
    cov = (true[test] >= lo) & (true[test] <= hi)
    nominal = (true[test] >= nlo) & (true[test] <= nhi)
    assert nominal[child].mean() < 0.8 and nominal[~child].mean() > 0.97
    assert abs(cov[child].mean() - 0.9) < 0.02 and abs(cov[~child].mean() - 0.9) < 0.02
    # bands without enough faces were merged; every band has at least MIN_BAND_FACES
    assert min(conf.n) >= D.MIN_BAND_FACES and conf.bands[0][0] == 0
    # a level between stored ones takes the next stored one up; past the last, the whole distribution
    assert np.all(conf.masses(0.88, [5.0]) == conf.masses(0.9, [5.0]))
    assert np.all(conf.masses(0.999, [5.0]) == 1.0)


def test_calibration_slot_round_trip_and_older_cards():
    card = create_model(DEFAULT_MODEL).card
    assert card.card_version == 2 and card.calibration["version"] == D.CALIBRATION_VERSION
    cal = D.Calibration.from_dict(card.calibration)
    assert cal.conformal is not None and cal.flag_threshold > 0 and cal.fitted_on["split"] == "val"
    assert D.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    # a card written before the slot existed (version 1, no calibration) still loads: the identity
    old = card.to_dict()
    del old["calibration"]
    old["card_version"] = 1
    v1 = ModelCard.from_dict(old)
    assert v1.calibration == {} and v1.decisions().calibration == D.Calibration()
    with pytest.raises(ConfigError, match="upgrade agescan"):
        ModelCard.from_dict({**old, "calibration": {**card.calibration, "version": D.CALIBRATION_VERSION + 1}})
    with pytest.raises(ConfigError, match="temperature"):
        dataclasses.replace(card, calibration={**card.calibration, "temperature": 0.0})


def test_every_face_is_decided_by_the_card(astronaut):
    est = AgeEstimator().load()
    cal = est.decider.calibration
    raw = AgeEstimator(calibrated=False).predict(astronaut).faces[0]
    face = est.predict(astronaut).faces[0]
    # the card's point rule read from the model's own distribution (the uncalibrated pipeline: DEX's mean); the
    # temperature never moves the estimate
    assert raw.age == pytest.approx(D.point_age(np.asarray(raw.distribution.probs))[0])
    assert face.age == pytest.approx(D.point_estimate(np.asarray(raw.distribution.probs), cal.point)[0])
    expect = D.temper(np.asarray(raw.distribution.probs), cal.temperature)[0]
    assert np.asarray(face.distribution.probs) == pytest.approx(expect, abs=1e-9)
    assert face.p_minor == pytest.approx(expect[:18].sum(), abs=1e-9)
    mass = cal.conformal.masses(0.9, [face.age])
    assert face.interval == pytest.approx(tuple(x[0] for x in D.central_interval(expect, mass)), abs=1e-9)
    assert raw.interval == pytest.approx(raw.distribution.interval(0.9), abs=1e-9)
    assert face.interval != pytest.approx(raw.interval)
    # without a calibration there is no refer interval: the probability (and the challenge age) alone flag a face,
    # so this adult is not flagged (an uncalibrated card once flagged every face)
    plain = AgeEstimator(calibrated=False, flag_threshold=0.5)
    assert raw.flagged == (raw.p_minor >= AgeEstimator(calibrated=False).flag_threshold)
    assert raw.p_minor < 0.5 and raw.age >= plain.challenge_age and not plain.predict(astronaut).faces[0].flagged
    # the triage threshold is the card's unless one is given
    assert est.flag_threshold == cal.flag_threshold and AgeEstimator(flag_threshold=0.3).flag_threshold == 0.3
    assert est.predict(astronaut).provenance.flag_threshold == cal.flag_threshold


def test_verdict_needs_probability_and_interval():
    probs = _gauss([30.0, 8.0, 17.0, 19.0], [2.0, 1.5, 3.0, 0.3])
    point = D.point_age(probs)
    plain, refer = D.Decider(0), D.Decider(0, D.Calibration(refer_interval=True))
    assert list(plain.verdict(probs, point, 18, 0.02)) == ["over", "under", "unsure", "over"]
    assert list(refer.verdict(probs, point, 18, 0.02)) == ["over", "under", "unsure", "over"]
    # a face the model calls surely over 18 in a band where conformal found it overconfident (98% of the band's
    # faces needed the whole mass): probability alone says over, the rule with the interval says unsure
    p = _gauss([21.0], [1.4])
    assert D.p_below(p, 18)[0] < 0.02 and plain.verdict(p, D.point_age(p), 18, 0.02)[0] == "over"
    levels = D.CONFORMAL_LEVELS
    wide = D.Conformal(bands=((0, 200),), levels=levels, mass=(tuple(1.0 for _ in levels),), n=(500,))
    strict = D.Decider(0, D.Calibration(conformal=wide, refer_interval=True))
    assert strict.verdict(p, D.point_age(p), 18, 0.02)[0] == "unsure"
    assert strict.refer_low(p, D.point_age(p), 0.02)[0] == 0.0 and plain.refer_low(p, [21.0], 0.02)[0] == np.inf


def _skewed(n: int = 1, seed: int = 0) -> np.ndarray:
    """Right-skewed distributions (a child's face: most mass at 8-10, a long tail into the twenties)."""
    rng = np.random.default_rng(seed)
    a = np.arange(101)[None].astype(float)
    mode = rng.uniform(6, 12, n)[:, None]
    p = np.where(a < mode, np.exp(-0.5 * ((a - mode) / 1.5) ** 2), np.exp(-(a - mode) / 6.0))
    return p / p.sum(1, keepdims=True)


def test_the_point_age_follows_the_cards_rule():
    p = _skewed()
    mean, median = D.point_estimate(p)[0], D.point_estimate(p, "median")[0]
    assert mean == pytest.approx(D.point_age(p)[0]) and median == pytest.approx(D.quantile(p, 0.5)[0])
    assert median < mean - 1.0  # the tail pulls the mean up
    # the median minimises the expected absolute error: ages drawn from the distribution itself
    ages = np.random.default_rng(1).choice(101, 20000, p=p[0]) + np.random.default_rng(2).uniform(-0.5, 0.5, 20000)
    assert np.abs(ages - median).mean() < np.abs(ages - mean).mean()
    # a one-hot bin k gives exactly k, as the mean does
    first = np.zeros((1, 101))
    first[0, 0] = 1.0
    assert D.point_estimate(first, "median")[0] == 0.0 and D.point_estimate(first, "median", min_age=5)[0] == 5.0
    first[0, [0, 7]] = [0.0, 1.0]
    assert D.point_estimate(first, "median")[0] == 7.0
    with pytest.raises(ConfigError, match="point-age rule"):
        D.point_estimate(p, "mode")
    # the decider reads the card's rule from the model's own distribution: the temperature never moves it
    for t in (1.0, 2.5):
        d = D.Decider(0, D.Calibration(temperature=t, point="median")).decide(p)
        assert d.age[0] == pytest.approx(median)
    assert D.Decider(0).decide(p).age[0] == pytest.approx(mean)  # no calibration: DEX's mean
    assert D.Calibration.from_dict({"temperature": 1.2}).point == "mean"  # a slot written before the rule existed
    assert D.Calibration.from_dict(D.Calibration(point="median").to_dict()).point == "median"
    with pytest.raises(ConfigError, match="upgrade agescan"):
        D.Calibration(point="mode")


def test_thresholds_for_pictures_in_a_privacy_condition():
    mosaic = {"flag_threshold": 0.007, "max_error": 0.003, "refer_interval": False}
    cal = D.Calibration(flag_threshold=0.039, max_error=0.02, refer_interval=True, point="median",
                        conditions={"eye-mosaic": mosaic})
    m = cal.for_condition("eye-mosaic")
    assert (m.flag_threshold, m.max_error, m.refer_interval) == (0.007, 0.003, False)
    assert m.point == "median" and m.temperature == cal.temperature  # shared
    assert cal.for_condition("") is cal and cal.for_condition("eye-mask") is cal  # none fitted for it: the main ones
    assert D.Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    with pytest.raises(ConfigError, match="condition 'eye-mosaic'"):
        D.Calibration(conditions={"eye-mosaic": {**mosaic, "flag_threshold": 1.5}})
    with pytest.raises(ConfigError, match="upgrade agescan"):
        D.Calibration(conditions={"eye-mosaic": {**mosaic, "something_new": 1}})
    # the default card carries them for the transforms it was fitted on, and the pipeline applies them
    card = create_model(DEFAULT_MODEL).card
    shipped = D.Calibration.from_dict(card.calibration)
    assert set(shipped.conditions) == {"eye-mosaic", "face-blur"}  # the mask keeps the main ones (val)
    assert AgeEstimator(condition="eye-mask").flag_threshold == shipped.flag_threshold
    want = shipped.conditions["eye-mosaic"]
    for est in (AgeEstimator(condition="eye-mosaic"), AgeEstimator(transform="eye-mosaic"),
                AgeEstimator(anonymise="eye-mosaic"), AgeEstimator(transform="eye-mask", condition="eye-mosaic")):
        assert est.input_condition == "eye-mosaic"
        assert (est.flag_threshold, est.max_error, est.decider.calibration.refer_interval) == \
            (want["flag_threshold"], want["max_error"], want["refer_interval"])
    plain, banded = AgeEstimator(), AgeEstimator(condition="eyeband")  # the main fit covers the band (old spelling)
    assert banded.input_condition == "eye-band"
    assert plain.flag_threshold == banded.flag_threshold == shipped.flag_threshold
    assert AgeEstimator(condition="eye-mosaic", flag_threshold=0.2).flag_threshold == 0.2  # given wins
    assert AgeEstimator().replace(condition="eye-mosaic").flag_threshold == want["flag_threshold"]
    from agescan.errors import ModelNotFoundError
    with pytest.raises(ModelNotFoundError):
        AgeEstimator(condition="no-such-transform")
