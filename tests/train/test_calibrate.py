"""agescan train calibrate: the fit on val (temperature, conformal masses, thresholds by their documented rule)."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from agescan import AgeEstimator
from agescan import decisions as D
from agescan.train.calibrate import choose_point, fit, largest_threshold, main, round_down
from tests.conftest import UTKFACE, utkface_rows


def _raw(seed: int, n: int = 3000, miss: int = 0):
    rng = np.random.default_rng(seed)
    true = rng.integers(1, 80, n).astype(float)
    centre = true + rng.normal(0, 3 + 0.1 * true)
    a = np.arange(101)[None]
    p = np.exp(-0.5 * ((a - centre[:, None]) / (2 + 0.08 * np.abs(centre[:, None]))) ** 2)
    p /= p.sum(1, keepdims=True)
    found = np.ones(n, bool)
    found[:miss] = False
    return p, found, true


def test_thresholds_follow_the_rule_per_condition():
    raw = {"clean": _raw(0), "eyeband": _raw(1, miss=3)}
    cal, summary = fit(raw, 0, refer_interval=True)
    decider = D.Decider(0, cal)
    assert cal.flag_threshold == round_down(min(summary["flag_threshold_per_condition"].values()))
    for cond, (p, found, true) in raw.items():
        d = decider.decide(p)
        minor = true < 18
        e = summary["flag_threshold_per_condition"][cond]
        low = decider.refer_low(d.probs, d.age, e)
        passed = ~found | ((d.p_minor < e) & (low >= 18))
        assert passed[minor].sum() <= np.floor(0.01 * minor.sum())  # at most 1% of minors pass, misses included
        # and the next candidate value up lets more through than the rule allows
        cands = np.unique(np.r_[d.p_minor[minor & found], 0.5])
        e2 = float(cands[cands > e][0])
        low2 = decider.refer_low(d.probs, d.age, e2)
        more = ~found | ((d.p_minor < e2) & (low2 >= 18))
        assert more[minor].sum() > np.floor(0.01 * minor.sum())
    # the stored threshold, used as AgeEstimator uses it, keeps every condition within the rule
    assert 0 < cal.flag_threshold <= min(summary["flag_threshold_per_condition"].values())
    assert cal.max_error == pytest.approx(summary["max_error_fitted"]) and cal.conformal is not None


def test_probability_alone_without_the_refer_interval():
    # --no-refer-interval: a minor passes on P(minor) < e alone; the threshold still keeps the passes within 1%
    raw = {"clean": _raw(0), "eyeband": _raw(1, miss=3)}
    cal, summary = fit(raw, 0, refer_interval=False)
    assert not cal.refer_interval and 0 < cal.flag_threshold < 0.5
    decider = D.Decider(0, cal)
    for cond, (p, found, true) in raw.items():
        d = decider.decide(p)
        minor = true < 18
        passed = ~found | (d.p_minor < summary["flag_threshold_per_condition"][cond])
        assert 0 < passed[minor].sum() <= np.floor(0.01 * minor.sum())
    assert np.isinf(decider.refer_low(d.probs, d.age, cal.flag_threshold)).all()
    # with the interval required the same faces allow a larger threshold (the interval also has to agree)
    assert fit(raw, 0, refer_interval=True)[0].flag_threshold >= cal.flag_threshold


def _jumps(seed: int, frac: float, n: int = 3000):
    """Minors aged 14-17 of whom ``frac`` are read 8 years older with a confident (narrow) distribution."""
    rng = np.random.default_rng(seed)
    true = rng.integers(1, 80, n).astype(float)
    jump = (true >= 14) & (true < 18) & (rng.random(n) < frac)
    centre = true + rng.normal(0, 0.5, n) * (1 + 0.1 * true) + 8.0 * jump
    a = np.arange(101)[None]
    p = np.exp(-0.5 * ((a - centre[:, None]) / (1.5 * (1 + 0.1 * np.abs(centre[:, None])))) ** 2)
    return p / p.sum(1, keepdims=True), np.ones(n, bool), true


@pytest.mark.parametrize("frac, winner", [(0.1, "probability alone"), (0.3, "refer interval")])
def test_the_rule_flagging_fewer_val_adults_is_kept(frac, winner):
    from agescan.triage import is_flagged

    raw = {"clean": _jumps(0, frac), "eyeband": _jumps(1, frac)}
    cal, summary = fit(raw, 0)  # auto: both rules fitted under the same 1% budget of minors
    choice = summary["rule_choice"]
    assert choice["chosen"] == winner and cal.refer_interval == (winner == "refer interval")
    other = "refer interval" if winner == "probability alone" else "probability alone"
    assert choice[winner]["adults_flagged_mean"] < choice[other]["adults_flagged_mean"]
    assert cal == fit(raw, 0, refer_interval=winner == "refer interval")[0]
    # the rates are the pipeline's flag (triage.is_flagged with the refer interval's lower end) on the val adults
    decider = D.Decider(0, cal)
    for cond, (p, found, true) in raw.items():
        d = decider.decide(p)
        low = decider.refer_low(d.probs, d.age, cal.flag_threshold)
        flags = [is_flagged(pm, a, cal.flag_threshold, 0.0, refer_lo=lo) for pm, a, lo in zip(d.p_minor, d.age, low)]
        adult = true >= 18
        assert np.mean(np.array(flags)[adult]) == pytest.approx(choice[winner]["adults_flagged"][cond])


def _skewed_raw(seed: int, truth: str, n: int = 2000):
    """Right-skewed distributions whose true age is their mean or their median, with some faces missed."""
    rng = np.random.default_rng(seed)
    a = np.arange(101)[None].astype(float)
    mode = rng.uniform(2, 60, n)[:, None]
    p = np.where(a < mode, np.exp(-0.5 * ((a - mode) / 1.5) ** 2), np.exp(-(a - mode) / rng.uniform(2, 8, (n, 1))))
    p /= p.sum(1, keepdims=True)
    true = D.point_estimate(p, truth) + rng.normal(0, 0.5, n)
    found = rng.random(n) > 0.02
    return p, found, true


@pytest.mark.parametrize("truth", ["mean", "median"])
def test_the_point_rule_with_the_lower_val_error_is_kept(truth):
    raw = {"clean": _skewed_raw(0, truth), "eyeband": _skewed_raw(1, truth)}
    chosen, scores = choose_point(raw, 0)
    assert chosen == truth and scores[truth]["score"] < scores[{"mean": "median", "median": "mean"}[truth]]["score"]
    p, found, true = raw["clean"]
    err = np.abs(D.point_estimate(p[found], truth) - true[found])
    assert scores[truth]["clean"]["mae"] == pytest.approx(err.mean())  # faces found only
    assert scores[truth]["clean"]["mae_0_25"] == pytest.approx(err[true[found] <= 25].mean())
    calib, summary = fit(raw, 0, refer_interval=True)
    assert calib.point == truth and summary["point"] == truth and summary["point_choice"]["chosen"] == truth
    # the conformal bands are of the chosen rule's point ages; a rule given is used as given
    probs = np.concatenate([r[0][r[1]] for r in raw.values()])
    ages = np.concatenate([r[2][r[1]] for r in raw.values()])
    expect = D.fit_conformal(D.temper(probs, calib.temperature), ages, D.point_estimate(probs, truth), 0)
    assert calib.conformal == expect
    other = {"mean": "median", "median": "mean"}[truth]
    given, summary = fit(raw, 0, refer_interval=True, point=other)
    assert given.point == other and "point_choice" not in summary


def test_a_missed_face_has_no_distribution_and_changes_nothing():
    # predict_split gives a missed face a row of zeros; the fit neither warns about it nor reads it
    import warnings

    p, found, true = _raw(3, miss=40)
    zeros = p.copy()
    zeros[~found] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, _ = fit({"clean": (zeros, found, true)}, 0, refer_interval=True)
    b, _ = fit({"clean": (p, found, true)}, 0, refer_interval=True)
    assert a == b


def test_thresholds_per_condition_keep_that_conditions_budget():
    # a condition whose distributions say "adult" more readily (shifted up 3 years) needs a lower threshold to keep
    # its minors within 1%; the main fit is untouched by it
    raw = {"clean": _raw(0), "eyeband": _raw(1)}
    p, found, true = _raw(7)
    shifted = np.roll(p, 3, axis=1)
    shifted[:, :3] = 0.0
    shifted /= shifted.sum(1, keepdims=True)
    main, _ = fit(raw, 0, refer_interval=True, point="mean")
    both, summary = fit(raw, 0, refer_interval=True, point="mean", per_condition={"eye-mosaic": (shifted, found, true)})
    assert dataclasses.replace(both, conditions={}) == main
    c = both.conditions["eye-mosaic"]
    assert set(c) == {"flag_threshold", "max_error", "refer_interval"} and c["refer_interval"] is True
    assert c["flag_threshold"] < main.flag_threshold and summary["per_condition"]["eye-mosaic"]["flag_threshold"] == \
        c["flag_threshold"]
    d = D.Decider(0, both.for_condition("eye-mosaic")).decide(shifted, 18)
    minors = true < 18
    low = D.Decider(0, both.for_condition("eye-mosaic")).refer_low(d.probs, d.age, c["flag_threshold"])
    passed = (d.p_minor >= c["flag_threshold"]) | (low < 18)
    assert (~passed[minors]).mean() <= 0.01  # its own budget holds
    d = D.Decider(0, main).decide(shifted, 18)
    low = D.Decider(0, main).refer_low(d.probs, d.age, main.flag_threshold)
    assert (~((d.p_minor >= main.flag_threshold) | (low < 18))[minors]).mean() > 0.01  # the main one's does not


def test_misses_count_against_the_budget():
    p = np.linspace(0.0, 0.2, 100)
    everyone = lambda e: np.full(100, 99.0)  # noqa: E731 (an interval that never objects)
    found = np.ones(100, bool)
    assert largest_threshold(p, everyone, found, 18) == pytest.approx(p[1])  # one of 100 may pass: p < p[1]
    found[0] = False
    assert largest_threshold(p, everyone, found, 18) == pytest.approx(p[1])  # the miss uses the budget; p[0] missed
    found[1] = False
    assert largest_threshold(p, everyone, found, 18) == 0.0  # two misses exceed 1% whatever the threshold


@pytest.mark.slow
def test_the_command_fits_real_faces_and_writes_the_chosen_rule(tmp_path):
    # 240 real val faces (half under 18) through the pipeline, once for both runs (--cache); the card written holds
    # the rule the summary chose, and --refer-interval no forces the probability alone
    rows = utkface_rows("val")
    minors = [r for r in rows if float(r["age"]) < 18][:120]
    adults = [r for r in rows if float(r["age"]) >= 18][:120]
    data = tmp_path / "val"
    data.mkdir()
    with open(data / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "age", "split"])
        for r in minors + adults:
            w.writerow([str(UTKFACE / r["path"]), r["age"], "val"])
    common = ["resnet10x2-ocl.utkface", str(data), "--cache", str(tmp_path / "cache")]
    main([*common, "--out", str(tmp_path / "auto.onnx"), "--summary", str(tmp_path / "auto.json")])
    summary = json.loads((tmp_path / "auto.json").read_text())
    choice = summary["summary"]["rule_choice"]
    chosen = choice["chosen"]
    assert chosen == min(("refer interval", "probability alone"), key=lambda r: choice[r]["adults_flagged_mean"])
    cal = AgeEstimator(str(tmp_path / "auto.onnx")).decider.calibration
    assert cal.refer_interval == (chosen == "refer interval") and cal.fitted_on["faces"] == 480
    assert "chosen: of the two rules" in cal.rules["refer_interval"]
    assert cal.point == summary["summary"]["point_choice"]["chosen"] == summary["calibration"]["point"]
    assert "chosen: of the mean and the median" in cal.rules["point"]
    main([*common, "--out", str(tmp_path / "no.onnx"), "--refer-interval", "no", "--point", "mean",
          "--per-condition", "eye-mosaic"])
    cal = AgeEstimator(str(tmp_path / "no.onnx")).decider.calibration
    assert not cal.refer_interval and cal.rules["refer_interval"].endswith("(given)")
    assert cal.point == "mean" and cal.rules["point"].endswith("(given)")
    # thresholds of its own for the mosaic, by the rule given; the pipeline applies them to mosaicked pictures
    assert set(cal.conditions) == {"eye-mosaic"} and cal.conditions["eye-mosaic"]["refer_interval"] is False
    assert "eye-mosaic" in cal.rules["conditions"] and cal.fitted_on["per_condition"] == ["eye-mosaic"]
    mosaic = AgeEstimator(str(tmp_path / "no.onnx"), condition="eye-mosaic")
    assert mosaic.flag_threshold == cal.conditions["eye-mosaic"]["flag_threshold"]
    assert cal.flag_threshold == pytest.approx(choice["probability alone"]["flag_threshold"])
