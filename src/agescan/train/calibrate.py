"""Fit a model's calibration on the validation split and write it into the model's card (``agescan train calibrate``).

    agescan train calibrate MODEL DATA --out OUT.onnx [--split val] [--cache DIR]

Every face goes through the pipeline users call (:class:`~agescan.AgeEstimator` with ``calibrated=False``): each val
chip padded as ``agescan evaluate`` pads it, clean and with the paper's eye band drawn before the pipeline
(:func:`agescan.eval.run.predict_labelled`). On the faces found, pooled over both conditions:

0. **the point age** (``--point auto``, the default): the mean of the model's distribution (DEX) or its median,
   whichever has the lower val error (the mean over the conditions of (MAE + MAE 0-25) / 2, faces found; a tie
   keeps the mean). The median minimises the expected absolute error; on agescan's models it lowers val MAE 0-25 by
   2-9% at about the same all-ages MAE (docs/calibration.md). The conformal bands below are of this point age;
1. **temperature** of the distribution (:func:`agescan.decisions.fit_temperature`): the one value minimising the
   mean binary log loss of P(age < t) for t = 13, 16, 18;
2. **Mondrian split-conformal masses** (:func:`agescan.decisions.fit_conformal`): per band of predicted (point) age,
   the central mass of the calibrated distribution that covered each nominal level of that band's faces;
3. **triage threshold** (``flag_threshold``): for each condition, the largest P(minor) threshold that lets at most
   1% of the val minors pass (a face the detector misses passes: it is never flagged), the refer interval (level
   1 - 2e, :mod:`agescan.decisions`) in the rule; the smaller of the two, rounded down to 3 decimals (4 below
   0.01). The rule that chose 0.023 before calibration;
4. **age-check max_error**: the same rule for the age check's pass (P(under t) <= e, interval of level 1 - 2e
   above t) at t = 13, 16 and 18, the smallest of the six values, rounded down the same way (or ``--max-error``);
5. **the rule** (``--refer-interval auto``, the default): 3 and 4 are fitted twice, with the refer interval and by
   the probability alone (each letting at most 1% of the val minors pass), and the card keeps the one that flags
   fewer val adults (mean over the conditions; a tie keeps the interval). Which rule wins depends on the model: a
   sharper one can need a wide interval for its conformal coverage, which then holds adults in review;
6. **per transform** (``--per-condition eye-mosaic,...``, none by default): for each transform whose val pictures
   the main thresholds do not keep within the 1% budgets (flag and age check), 3-5 again on those pictures alone
   (same temperature, masses and point; max_error fitted), stored in the card's ``conditions``:
   the pipeline uses them for pictures in that condition (``AgeEstimator(condition=...)``, ``--input-condition``,
   or implied by ``--transform``), since a transform the main fit never saw may need another threshold to keep
   its 1% budget (the eye mosaic does, docs/calibration.md).

The card's other fields and the weights are unchanged: the new ONNX file differs from MODEL only in its metadata
(so its sha256 changes: a packaged model's entry in ``agescan/models/zoo.py`` must be updated, which the command
prints). The Markdown card beside OUT (``OUT.md``; when there is none, MODEL's own ``.md`` is copied there) is
kept in step: its file line gets the new size and sha256.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from agescan import decisions as D

#: At most this share of the minors (of the people under the age checked) may pass, per condition.
MAX_MISS = 0.01


def round_down(x: float) -> float:
    digits = 3 if x >= 0.01 else 4
    return math.floor(x * 10 ** digits) / 10 ** digits


def largest_threshold(p_under: np.ndarray, low, found: np.ndarray, age: float, max_miss: float = MAX_MISS,
                      inclusive: bool = False) -> float:
    """The largest threshold ``e`` on P(under) such that at most ``max_miss`` of these (under-age) faces pass.

    A face passes when the detector missed it, or when P(under) < e (``<= e`` with ``inclusive``: the age check's
    pass) and ``low(e)`` (the lower ends of the refer intervals at error e) is at least ``age``. Both conditions
    only loosen as e grows, so the passes grow with e: the answer is the largest of these faces' P(under) values
    below 0.5 (or 0.5 itself) that keeps the passes within the budget, found by bisection.
    """
    allowed = int(math.floor(max_miss * len(p_under))) - int((~found).sum())
    if allowed < 0:
        return 0.0

    def passes(e: float) -> int:
        ok = (p_under <= e) if inclusive else (p_under < e)
        return int((ok & (low(e) >= age) & found).sum())

    cand = np.unique(np.r_[p_under[found & (p_under < 0.5)], 0.5])  # never above 0.5: "sure" means more likely
    lo, hi = 0, len(cand) - 1  # the largest index whose value keeps passes within allowed
    if passes(float(cand[0])) > allowed:
        return 0.0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if passes(float(cand[mid])) <= allowed:
            lo = mid
        else:
            hi = mid - 1
    return float(cand[lo])


def adults_flagged(raw: dict, calibration: D.Calibration, min_age: int) -> dict:
    """{condition: share of the adults (true age >= 18) the pipeline's flag (:func:`agescan.triage.is_flagged`, as
    ``AgeEstimator`` applies it) sends to review with ``calibration``; a face the detector missed is never flagged."""
    from agescan.triage import is_flagged

    decider = D.Decider(min_age, calibration)
    e = calibration.flag_threshold
    out = {}
    for cond, (p, found, true) in raw.items():
        adult = found & (true >= 18)
        d = decider.decide(p[adult], 18)
        low = decider.refer_low(d.probs, d.age, e)
        n_flagged = sum(is_flagged(float(pm), float(a), e, 0.0, refer_lo=float(lo))
                        for pm, a, lo in zip(d.p_minor, d.age, low))
        out[cond] = n_flagged / int((true >= 18).sum()) if (true >= 18).any() else 0.0
    return out


def point_scores(raw: dict, min_age: int) -> dict:
    """{rule: {"score", condition: {"mae", "mae_0_25"}}} for each of :data:`agescan.decisions.POINT_RULES` on the
    faces found; "score" is the mean over conditions of (MAE + MAE 0-25) / 2, the balance training selects on."""
    out = {}
    for rule in D.POINT_RULES:
        per = {}
        for cond, (p, found, true) in raw.items():
            err = np.abs(D.point_estimate(p[found], rule, min_age) - true[found])
            young = true[found] <= 25
            per[cond] = {"mae": float(err.mean()) if len(err) else float("nan"),
                         "mae_0_25": float(err[young].mean()) if young.any() else float("nan")}
        out[rule] = {"score": float(np.nanmean([(v["mae"] + v["mae_0_25"]) / 2 for v in per.values()])), **per}
    return out


def choose_point(raw: dict, min_age: int) -> tuple[str, dict]:
    """The point-age rule with the lower :func:`point_scores` score on val (a tie keeps the mean), and the scores."""
    scores = point_scores(raw, min_age)
    return min(D.POINT_RULES, key=lambda r: (round(scores[r]["score"], 9), r != "mean")), scores


def fit(raw: dict, min_age: int, refer_interval: bool | None = None,
        max_error: float | None = None, point: str | None = None,
        per_condition: dict | None = None) -> tuple[D.Calibration, dict]:
    """The calibration from ``raw`` = {condition: (probs N x bins, found N, true ages N)}; also a summary.

    ``point`` None (the default) chooses the point-age rule on these faces (:func:`choose_point`; the summary's
    ``point_choice`` holds both rules' errors); the conformal bands are of the chosen rule's point ages.
    ``refer_interval`` None (the default) fits the thresholds for both rules, with the refer interval and by the
    probability alone, each under the same 1% budget of minors, and keeps the one that flags fewer val adults (the
    mean over conditions; a tie keeps the interval). The summary's ``rule_choice`` holds both. The temperature and
    the conformal masses do not depend on the rule: they are fitted once.

    ``per_condition`` = {transform name: (probs, found, true ages)} of val pictures that went through a registered
    privacy transform: where the main thresholds let more than 1% of its people under 18 (under 13, 16, 18 for the
    age check) pass (:func:`budget_passes`), the flag threshold, max_error and rule are fitted on those pictures
    alone (same temperature, masses and point rule; the rule chosen the same way) and stored in the card's
    ``conditions``, which the pipeline applies to pictures in that condition (``AgeEstimator(condition=...)``).
    Where the main thresholds keep its budget, nothing is stored. The main thresholds are fitted on ``raw`` alone."""
    probs = np.concatenate([r[0][r[1]] for r in raw.values()])
    ages = np.concatenate([r[2][r[1]] for r in raw.values()])
    summary = {}
    if point is None:
        point, scores = choose_point(raw, min_age)
        summary["point_choice"] = {"chosen": point, **scores}
    temperature = D.fit_temperature(probs, ages, min_age)
    conformal = D.fit_conformal(D.temper(probs, temperature), ages, D.point_estimate(probs, point, min_age), min_age)
    base = D.Calibration(temperature=temperature, conformal=conformal, point=point)
    summary = {"temperature": temperature, "point": point, **summary,
               "conformal_bands": [list(b) for b in conformal.bands], "conformal_n": list(conformal.n),
               "faces": int(len(ages))}
    calib, rule_summary = _fit_rule(raw, min_age, base, refer_interval, max_error)
    summary = {**summary, **rule_summary}
    if per_condition:
        fitted, summary["per_condition"] = {}, {}
        for name, cond_raw in per_condition.items():
            main_passes = budget_passes(cond_raw, calib, min_age)
            if all(v["passed"] <= v["allowed"] for v in main_passes.values()):
                # the main thresholds keep this condition's budget: nothing to fit (its own fit could only loosen
                # them, on fewer faces)
                summary["per_condition"][name] = {"kept_main": True, "main_passes": main_passes}
                continue
            # the same temperature, masses and point; thresholds and rule for these pictures alone (max_error fitted:
            # a value given for the main conditions was chosen for them)
            c, s = _fit_rule({name: cond_raw}, min_age, base, refer_interval, None)
            fitted[name] = {"flag_threshold": c.flag_threshold, "max_error": c.max_error,
                            "refer_interval": c.refer_interval}
            summary["per_condition"][name] = {"kept_main": False, "main_passes": main_passes, **fitted[name], **s}
        calib = dataclasses.replace(calib, conditions=fitted)
    return calib, summary


def _with_misses(p: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``p`` with a uniform stand-in for each missed face's row of zeros: the rows stay aligned without NaNs, and the
    ``found`` mask counts a miss as passed whatever it holds."""
    return np.where(found[:, None], p, 1.0 / p.shape[1])


def budget_passes(cond_raw: tuple, calibration: D.Calibration, min_age: int) -> dict:
    """{"flag" | "age check t": {"passed", "allowed", "n"}}: how many of one condition's people under 18 (under t)
    the flag leaves out of review (the age check passes, t = 13, 16, 18) with ``calibration``'s thresholds, a miss
    counting as passed as in the fit, against the 1% allowed."""
    from agescan.triage import is_flagged

    p, found, true = cond_raw
    decider = D.Decider(min_age, calibration)
    d = decider.decide(_with_misses(p, found), 18)
    e = calibration.flag_threshold
    flagged = np.array([is_flagged(float(pm), float(a), e, 0.0, refer_lo=float(lo))
                        for pm, a, lo in zip(d.p_minor, d.age, decider.refer_low(d.probs, d.age, e))], dtype=bool)

    def count(passed: np.ndarray, under: np.ndarray) -> dict:
        return {"passed": int((passed | ~found)[under].sum()), "allowed": int(math.floor(MAX_MISS * under.sum())),
                "n": int(under.sum())}

    out = {"flag": count(~flagged, true < 18)}
    for t in (13, 16, 18):
        out[f"age check {t}"] = count(decider.verdict(d.probs, d.age, t, calibration.max_error) == "over", true < t)
    return out


def _fit_rule(raw: dict, min_age: int, base: D.Calibration, refer_interval: bool | None,
              max_error: float | None) -> tuple[D.Calibration, dict]:
    """The thresholds on ``raw`` by the rule given, or (None) by both rules keeping the one that flags fewer of its
    adults (mean over conditions; a tie keeps the interval), with the summary's ``rule_choice``."""
    if refer_interval is not None:
        return _fit_thresholds(raw, min_age, dataclasses.replace(base, refer_interval=refer_interval), max_error)
    fits = {rule: _fit_thresholds(raw, min_age, dataclasses.replace(base, refer_interval=rule == "refer interval"),
                                  max_error) for rule in ("refer interval", "probability alone")}
    flagged = {rule: adults_flagged(raw, cal, min_age) for rule, (cal, _) in fits.items()}
    mean = {rule: float(np.mean(list(v.values()))) for rule, v in flagged.items()}
    chosen = min(fits, key=lambda rule: (round(mean[rule], 9), rule != "refer interval"))
    calib, rule_summary = fits[chosen]
    return calib, {**rule_summary, "rule_choice": {"chosen": chosen, **{
        rule: {"flag_threshold": fits[rule][0].flag_threshold, "max_error": fits[rule][0].max_error,
               "adults_flagged": flagged[rule], "adults_flagged_mean": mean[rule]} for rule in fits}}}


def _fit_thresholds(raw: dict, min_age: int, base: D.Calibration,
                    max_error: float | None) -> tuple[D.Calibration, dict]:
    """``base`` (temperature, conformal masses, rule) with the flag threshold and max_error fitted by its rule."""
    decider = D.Decider(min_age, base)
    flags, errors = {}, {}
    for cond, (p, found, true) in raw.items():
        d = decider.decide(_with_misses(p, found), 18)
        for t in (13, 16, 18):
            under = true < t
            pu = D.p_below(d.probs, t, min_age)[under]
            cp, ca = d.probs[under], d.age[under]

            def low(e: float, cp=cp, ca=ca) -> np.ndarray:
                return decider.refer_low(cp, ca, e)

            errors[f"{cond} t={t}"] = largest_threshold(pu, low, found[under], t, inclusive=True)
            if t == 18:
                flags[cond] = largest_threshold(pu, low, found[under], t)
    flag_threshold = round_down(min(flags.values()))
    fitted_error = min(round_down(min(errors.values())), 0.49)
    max_error = fitted_error if max_error is None else max_error
    calib = dataclasses.replace(base, flag_threshold=flag_threshold, max_error=max_error)
    return calib, {"flag_threshold_per_condition": flags, "max_error_per_condition_and_age": errors,
                   "flag_threshold": flag_threshold, "max_error_fitted": fitted_error, "max_error": max_error}


def predict_split(model: str, data: str, split: str, conditions, threads: int, cache: str | None,
                  detector: str | None = None) -> tuple[dict, str, str]:
    """{condition: (model's own probabilities, found, true ages)} of ``split`` through the pipeline, and the
    sha256 of the rows (cached in ``cache`` as npz, keyed by model sha256, rows and condition)."""
    from agescan import AgeEstimator
    from agescan.detect import DEFAULT_DETECTOR
    from agescan.eval.datasets import read_dataset
    from agescan.eval.run import predict_labelled

    ds = read_dataset(data, split=split)
    rows_sha = hashlib.sha256("\n".join(f"{r['path']}\t{r['age']:g}" for r in ds.rows).encode()).hexdigest()
    est = AgeEstimator(model, detector or DEFAULT_DETECTOR, threads=threads, calibrated=False).load()
    true = np.array([r["age"] for r in ds.rows], dtype=np.float64)
    out = {}
    for cond in conditions:
        path = None
        if cache:
            key = hashlib.sha256(f"{est.model.sha256}{rows_sha}{cond}{est.detector_name}".encode()).hexdigest()[:16]
            path = Path(cache) / f"{est.model.id}-{split}-{cond}-{key}.npz"
            if path.is_file():
                z = np.load(path)
                out[cond] = (z["probs"], z["found"], true)
                continue
        lab = predict_labelled(est, ds.rows, cond, threads=threads, fallback=False)
        probs, found = lab.probs, lab.found
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, probs=probs, found=found)
        out[cond] = (probs, found, true)
    return out, rows_sha, ds.source


def write_calibrated(model: str, calibration: D.Calibration, out: str) -> str:
    """Write MODEL's ONNX file with ``calibration`` in its card to ``out``; returns the new file's sha256."""
    from agescan.export import embed_card
    from agescan.models import create_model
    from agescan.models.card import CARD_VERSION

    m = create_model(model)
    # an "interval_coverage" measured before calibration is of another interval (whole-year bins, nominal mass) than
    # the one users now get: it is dropped, not left to mislead; the coverage of the reported interval is measured
    # by `agescan evaluate` (reliability_and_coverage) and documented in docs/calibration.md
    metrics = {split: ({k: v for k, v in vals.items() if k != "interval_coverage"} if isinstance(vals, dict)
                       else vals) for split, vals in m.card.metrics.items()}
    card = dataclasses.replace(m.card, calibration=calibration.to_dict(), card_version=CARD_VERSION, metrics=metrics)
    data = embed_card(m.path.read_bytes(), card)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    source_md = Path(m.path).with_suffix(".md")
    source_text = source_md.read_text(encoding="utf-8") if source_md.is_file() else None  # before an in-place write
    Path(out).write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    markdown_in_step(Path(out), sha, len(data), source_text)
    return sha


#: The Markdown card's line naming its file, size and sha256 (``agescan train publish`` writes it).
_FILE_LINE = re.compile(r"^- \*\*File\*\*: `[^`]+`, [0-9,]+ bytes, sha256 `[0-9a-f]{64}`", re.M)


def markdown_in_step(onnx: Path, sha: str, size: int, source_text: str | None = None) -> Path | None:
    """Keep the Markdown card beside ``onnx`` (same name, ``.md``) in step with the file just written: its file line
    gets the new name, size and sha256. When there is none beside it but the model it came from had one
    (``source_text``), that card is written there with the new line. Returns the card written, or None."""
    md = onnx.with_suffix(".md")
    text = md.read_text(encoding="utf-8") if md.is_file() else source_text
    if text is None or not _FILE_LINE.search(text):
        return None
    md.write_text(_FILE_LINE.sub(f"- **File**: `{onnx.name}`, {size:,} bytes, sha256 `{sha}`", text, count=1),
                  encoding="utf-8")
    return md


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="agescan train calibrate", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="registered model name or .onnx path")
    ap.add_argument("data", help="labelled set (UTKFace's folder with labels.csv)")
    ap.add_argument("--out", required=True,
                    help="the calibrated .onnx to write (may be MODEL's own file); the Markdown card beside it "
                         "(OUT.md, or MODEL's card copied there) gets the new file's size and sha256")
    ap.add_argument("--split", default="val", help="split to fit on (default: val; never the test split)")
    ap.add_argument("--conditions", default="clean,eyeband", help="conditions pooled (default: clean,eyeband)")
    ap.add_argument("--per-condition", default="", metavar="NAMES",
                    help="privacy transforms (comma-separated, e.g. eye-mosaic) to fit thresholds for on their own, "
                         "stored in the card and used for pictures in that condition (`agescan estimate "
                         "--input-condition NAME` or --transform NAME); default: none")
    ap.add_argument("--refer-interval", choices=("auto", "yes", "no"), default="auto",
                    help="yes: a 'sure' verdict also needs the interval of level 1 - 2e to agree; no: the probability "
                         "alone decides; auto (default): fit both (each lets at most 1%% of val minors pass "
                         "unflagged) and keep the one that flags fewer val adults")
    ap.add_argument("--no-refer-interval", action="store_const", const="no", dest="refer_interval",
                    help="the same as --refer-interval no")
    ap.add_argument("--point", choices=("auto",) + D.POINT_RULES, default="auto",
                    help="how the point age is read from the distribution: mean (DEX's expected value), median "
                         "(minimises the expected absolute error), or auto (default): the one with the lower val "
                         "error, the mean over conditions of (MAE + MAE 0-25) / 2")
    ap.add_argument("--max-error", type=float, default=None,
                    help="store this age-check max_error instead of the fitted one (e.g. a value chosen through the "
                         "web page's flow by benchmarks/age_check_policies.py)")
    ap.add_argument("--detector", default=None, help="face detector (default: agescan's default)")
    ap.add_argument("--cache", metavar="DIR", help="keep the val predictions here (npz) for reruns")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", metavar="JSON", help="also write the fit's summary here")
    a = ap.parse_args(argv)
    if a.split == "test":
        ap.error("fit calibration on val, never on the test split it is reported on")
    from agescan.models import create_model

    card = create_model(a.model).card
    conditions = [c for c in a.conditions.split(",") if c]
    from agescan.errors import ModelNotFoundError
    from agescan.privacy import canonical_op

    try:
        extra = [canonical_op(c) for c in a.per_condition.split(",") if c]
    except ModelNotFoundError as e:
        ap.error(f"--per-condition: {e}")
    raw, rows_sha, source = predict_split(a.model, a.data, a.split, conditions, a.threads, a.cache, a.detector)
    per = predict_split(a.model, a.data, a.split, extra, a.threads, a.cache, a.detector)[0] if extra else None
    calib, summary = fit(raw, card.min_age, {"auto": None, "yes": True, "no": False}[a.refer_interval], a.max_error,
                         None if a.point == "auto" else a.point, per)
    command = "agescan train calibrate " + " ".join(argv if argv is not None else sys.argv[1:])
    calib = dataclasses.replace(calib, fitted_on={
        "data": source, "split": a.split, "conditions": conditions, "per_condition": extra, "faces": summary["faces"],
        "rows_sha256": rows_sha, "detector": a.detector or "default", "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")},
        rules={"point": (f"the {calib.point} of the model's own distribution" + (
                   " (chosen: of the mean and the median, the one with the lower val error, the mean over conditions "
                   "of (MAE + MAE 0-25) / 2 on faces found: " + ", ".join(
                       f"{r} {summary['point_choice'][r]['score']:.3f}" for r in D.POINT_RULES) + ")"
                   if "point_choice" in summary else " (given)")),
               "temperature": "minimises the mean binary log loss of P(age < t), t = 13, 16, 18, on val faces found "
                              "(conditions pooled)",
               "conformal": "Mondrian split-conformal, score |2 F(age) - 1| of the calibrated distribution, bands "
                            f"of predicted age with at least {D.MIN_BAND_FACES} val faces",
               "flag_threshold": "largest P(minor) letting at most 1% of val minors pass (misses pass), per "
                                 "condition; the smaller, rounded down",
               "max_error": ("largest P(under) letting at most 1% of val people under t pass the age check, t = "
                             "13, 16, 18, per condition; the smallest, rounded down" if a.max_error is None else
                             f"given (--max-error {a.max_error:g}); the fit allowed up to "
                             f"{summary['max_error_fitted']:g}"),
               "refer_interval": (("a sure 'over' (or 'under') at error e also needs the interval of level 1 - 2e "
                                   "(conformal) on that side of the age" if calib.refer_interval else
                                   "a sure 'over' (or 'under') at error e needs the probability alone") +
                                  (" (chosen: of the two rules, each fitted as above, the one flagging fewer val "
                                   "adults, mean over conditions: " + ", ".join(
                                       f"{rule} {summary['rule_choice'][rule]['adults_flagged_mean']:.1%}"
                                       for rule in ("refer interval", "probability alone")) + ")"
                                   if "rule_choice" in summary else " (given)")),
               **({"conditions": "for each of " + ", ".join(extra) + " whose val pictures the main thresholds (fitted "
                                 "on " + ", ".join(conditions) + ") do not keep within 1%, the flag threshold, "
                                 "max_error and rule fitted the same way on its pictures alone: " +
                                 (", ".join(calib.conditions) or "none needed")} if extra else {})})
    sha = write_calibrated(a.model, calib, a.out)
    summary["sha256"] = sha
    text = json.dumps({"calibration": calib.to_dict(), "summary": summary}, indent=2)
    if a.summary:
        Path(a.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(a.summary).write_text(text + "\n", encoding="utf-8")
    print(text)
    md = Path(a.out).with_suffix(".md")
    said = f" and its card {md}" if md.is_file() else ""
    print(f"wrote {a.out}{said} (sha256 {sha}); a packaged model: put this sha256 in agescan/models/zoo.py",
          file=sys.stderr)
