"""Run a whole held-out training protocol: train one model per fold, evaluate each held-out fold end to end
through the pipeline users call (``AgeEstimator``, as ``agescan evaluate`` does), and summarise.

    agescan train prepare ../shared/data/morph_small runs/data/morph_96.npz --preset morph
    agescan train cv runs/data/morph_96.npz runs/cv-morph --protocol kfold --folds 5 \\
        --arch dexnet-m --init dexnet-m.utkface --epochs 4 --lr 5e-4 --threads 1

Protocols (:data:`agescan.eval.protocols.TRAIN_PROTOCOLS`): ``kfold`` (subject-disjoint: every image of a
person in one fold; needs a subject column), ``random-kfold`` (rows drawn at random, so one person's images can
sit on both sides: only to show how optimistic that is), ``lopo`` (leave one subject out: one fold per person)
and ``logo`` (leave one value of ``--group-column`` out). Each fold is an ordinary ``agescan train fit`` run in
OUT/fold-NAME (``--fold I/K --fold-by subject``, ``--fold I/K`` or ``--holdout COLUMN=VALUE``), exported with its
card (temperature fitted on the fold's val rows; the card records the cascade of ``--init`` steps), then
evaluated on the held-out images by :func:`agescan.eval.run.evaluate_folder` (detector misses count).

**Resumable per fold.** A finished fold leaves OUT/fold-NAME/result.json and is never redone; a fold killed
while training resumes from its last epoch (``last.pt``); a fold killed while evaluating is evaluated again.
OUT/protocol.json pins the protocol, data and settings: rerunning with different ones is refused.

``agescan train cv summarise RUN...`` summarises hand-made ``train fit --fold/--holdout`` runs (their
``heldout.json``: crops as prepared, not the pipeline;
clean, with the eye band and with each transform the run was trained with; runs from agescan 0.1 name the band
``eyeband``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from agescan.eval.metrics import r2_score, thesis_3class
from agescan.eval.protocols import TRAIN_PROTOCOLS, assign_folds, fold_row, mean_sd
from agescan.eval.report import fold_table
from agescan.privacy import ALIASES


def summarise(runs: list[str | Path]) -> dict:
    """Per-run held-out metrics per condition, and their mean and sd (ddof=1) across runs."""
    per = []
    for run in runs:
        path = Path(run) / "heldout.json"
        if not path.is_file():
            raise SystemExit(f"{path}: missing. Train the run to its last epoch with --fold I/K or --holdout.")
        rep = json.loads(path.read_text())
        conds = {ALIASES.get(k, k): v for k, v in rep.items() if isinstance(v, dict) and "mae" in v}
        per.append({"run": str(run), "fold": rep["fold"] or rep["holdout"], "n": rep["n"],
                    **{c: fold_row(v) for c, v in conds.items()}})
    summary: dict = {"runs": per, "mean": {}, "sd": {}}
    seen = [c for c in per[0] if c not in ("run", "fold", "n")] if per else []
    for cond in seen:
        if all(cond in r for r in per):
            summary["mean"][cond], summary["sd"][cond] = mean_sd([r[cond] for r in per])
    return summary


def markdown(summary: dict) -> str:
    return "".join(f"\n{cond}\n\n" + fold_table("fold", [(r["fold"], r["n"], r[cond]) for r in summary["runs"]],
                                                 summary["mean"][cond], summary["sd"][cond])
                   for cond in summary["mean"])


#: How each fold's model is made: fine-tuned by ``agescan train fit``, or the feature-extraction baseline.
METHODS = ("finetune", "features")


def _candidates() -> dict:
    from agescan.train.features import CANDIDATES

    return CANDIDATES


def _fold_settings(protocol: str, name, i: int, k: int, subject_column: str, group_column: str) -> dict:
    """The ``agescan train fit`` options that hold out fold ``i`` (named ``name``) of ``protocol``."""
    if protocol == "kfold":
        return {"fold": f"{i}/{k}", "fold_by": subject_column}
    if protocol == "random-kfold":
        return {"fold": f"{i}/{k}", "fold_by": ""}
    column = subject_column if protocol == "lopo" else group_column
    return {"holdout": f"{column}={name}"}


def _safe(name) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _write_heldout_csv(path: Path, d, rows: np.ndarray) -> None:
    """The held-out images as a labels CSV (absolute paths) that :func:`evaluate_folder` reads."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "age", "subject", "gender", "group"])
        for i in rows:
            w.writerow([d["image_path"][i], int(d["age"][i]), d["subject"][i], d["gender"][i], d["group"][i]])


def _pooled(pred_csvs: list[Path]) -> dict:
    """Metrics over every held-out prediction of the protocol together (the usual leave-one-person-out number:
    with one or a few images per fold, per-fold means say little)."""
    true, pred, found = [], [], []
    for p in pred_csvs:
        with open(p, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                true.append(float(r["age"])); pred.append(float(r["pred"])); found.append(r["found"] == "1")
    t, q = np.array(true), np.array(pred)
    err = np.abs(q - t)
    return {"n": len(t), "faces_missed": int((~np.array(found)).sum()), "mae": float(err.mean()),
            "r2": r2_score(t, q), "cs5": float((err <= 5).mean()),
            "thesis_3class_accuracy": float((thesis_3class(t) == thesis_3class(q)).mean())}


def run_protocol(data: str | Path, out: str | Path, base: dict, *, protocol: str = "kfold", k: int = 5,
                 seed: int = 0, subject_column: str = "subject", group_column: str = "", condition: str = "clean",
                 detector: str | None = None, eval_threads: int = 1, max_folds: int = 0,
                 method: str = "finetune", regressors: tuple[str, ...] = ()) -> dict:
    """Train and evaluate every fold of ``protocol`` on the prepared file ``data``; returns the summary (also
    written to OUT/summary.json and OUT/summary.md). ``base``: :class:`~agescan.train.loop.TrainConfig` options
    shared by every fold. ``max_folds``: stop after this many folds (0: all; a time-sliced run resumes later).
    ``method``: ``finetune`` (``agescan train fit`` per fold) or ``features`` (the thesis' baseline,
    :mod:`agescan.train.features`: the ``--init`` network frozen, a regressor chosen by inner CV among
    ``regressors``, default all of :data:`agescan.train.features.CANDIDATES`)."""
    if method not in METHODS:
        raise SystemExit(f"The 'method' parameter must be one of {METHODS}. Got {method!r}.")
    from agescan.detect import DEFAULT_DETECTOR
    from agescan.eval.run import canonical_condition, evaluate_folder
    from agescan.train.loop import TrainConfig, build_for, protocol_split, train
    from agescan.train.publish import export_run

    import torch

    condition = canonical_condition(condition)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    detector = detector or DEFAULT_DETECTOR
    d = np.load(data)
    for key in ("image_path", "subject", "group"):
        if key not in d.files:
            raise SystemExit(f"{data}: made by an older `agescan train prepare` (no {key!r}); prepare it again.")
    column = subject_column if protocol in ("kfold", "lopo") else group_column if protocol == "logo" else ""
    if protocol == "logo" and not group_column:
        raise SystemExit("--protocol logo needs --group-column COLUMN (a column of the prepared file, e.g. race).")
    groups = None
    if column:
        if column not in d.files:
            raise SystemExit(f"{data}: no column {column!r} for --protocol {protocol}. Prepare the set with "
                             f"--subject-column (or --group-column) naming it.")
        groups = d[column]
        if protocol in ("kfold", "lopo") and (groups == "").all():
            raise SystemExit(f"{data}: the {column!r} column is empty: the set has no subject ids. Prepare it with "
                             "--subject-column COLUMN, or use --protocol random-kfold (people may then sit on both "
                             "sides of a fold).")
    try:
        folds, names = assign_folds(protocol, len(d["age"]), k=k, seed=seed, groups=groups)
    except ValueError as exc:
        raise SystemExit(f"agescan train cv: {exc}") from None
    k = len(names)
    data_sha = hashlib.sha256(Path(data).read_bytes()).hexdigest()
    pinned = {"data": str(data), "data_sha256": data_sha, "protocol": protocol, "k": k, "seed": seed,
              "column": column, "condition": condition, "detector": detector, "method": method,
              **({"regressors": list(regressors)} if regressors else {}),
              **({"candidates": _candidates()} if method == "features" else {}),
              "train": {kk: v for kk, v in base.items() if kk not in ("threads",)}}
    pin = out / "protocol.json"
    if pin.is_file():
        old = json.loads(pin.read_text())
        diff = [kk for kk in pinned if old.get(kk) != pinned[kk]]
        if diff:
            raise SystemExit(f"{out} holds a run of another protocol or settings ({', '.join(diff)} differ). "
                             "Rerun with the same ones to resume, or give a new OUT folder.")
    else:
        pin.write_text(json.dumps(pinned, indent=2))
    source = str(d["source"]) if "source" in d.files else str(data)
    rows, preds = [], []
    done_now = 0
    for i, name in enumerate(names):
        fold_dir = out / f"fold-{_safe(name)}"
        result = fold_dir / "result.json"
        if result.is_file():
            rows.append(json.loads(result.read_text()))
            preds.append(fold_dir / "predictions.csv")
            continue
        if max_folds and done_now >= max_folds:
            break
        t0 = time.time()
        cfg = TrainConfig(**{**base, "data": str(data), "out": str(fold_dir),
                             **_fold_settings(protocol, name, i, k, subject_column, group_column)})
        cfg.fold_seed = seed
        split = protocol_split(d, cfg)
        held = np.flatnonzero(split == "test")
        if len(held) != int((folds == i).sum()):
            raise RuntimeError(f"fold {name}: training holds out {len(held)} rows, the protocol {int((folds == i).sum())}")
        if groups is not None and protocol in ("kfold", "lopo"):
            inside = set(groups[split == "test"].tolist())
            if inside & set(groups[(split == "train") | (split == "val")].tolist()):
                raise RuntimeError(f"fold {name}: a subject is on both sides")  # never: the partition is by subject
        print(f"fold {name} ({i + 1}/{k}): train {int((split == 'train').sum())}, val {int((split == 'val').sum())}, "
              f"held out {len(held)}", file=sys.stderr, flush=True)
        arch_text = ""
        extra: dict = {}
        if method == "features":
            from agescan.train import features

            fold_dir.mkdir(parents=True, exist_ok=True)
            cfg.freeze = "backbone"  # recorded in the card: the network is not trained
            sub = d["subject"] if (d["subject"] != "").all() else None
            net, extra = features.fit(cfg, split, sub, regressors=regressors or None)
            (fold_dir / "features.json").write_text(json.dumps(extra, indent=2))
            arch_text = (f"frozen {cfg.arch} ({cfg.init}): pooled features -> {extra['regressor']} "
                         f"{extra['params']} chosen by {extra['inner_cv']} on MAE; Gaussian, sigma {extra['sigma']:.2f}")
        else:
            train(cfg, resume=True)
            net = build_for(cfg, load_first=False)
            net.load_state_dict(torch.load(fold_dir / "best.pt", weights_only=False)["model"])
        onnx_path, temperature = export_run(
            cfg, net.eval(), split == "val", f"cv.{protocol}.fold-{_safe(name)}", fold_dir / "model.onnx",
            training_data=f"{source}: protocol {protocol}, every fold but {name} (fold {i + 1} of {k}, seed {seed})",
            arch_text=arch_text)
        heldout_csv = fold_dir / "heldout.csv"
        _write_heldout_csv(heldout_csv, d, held)
        rep = evaluate_folder(str(onnx_path), fold_dir, labels=str(heldout_csv), split="all", condition=condition,
                              detector=detector, threads=eval_threads, predictions=str(fold_dir / "predictions.csv"))
        (fold_dir / "eval.json").write_text(json.dumps(rep, indent=2))
        row = {"fold": name if isinstance(name, str) else int(name), "n": rep["n"], "n_subjects":
               len(set(groups[held].tolist())) if groups is not None else None,
               "faces_missed": rep["faces_missed"], "temperature": temperature,
               "train_seconds": round(time.time() - t0 - rep["seconds"]["pipeline"], 1), **fold_row(rep),
               **({"features": extra} if extra else {})}
        result.write_text(json.dumps(row, indent=2))  # written last: its presence means the fold is finished
        rows.append(row)
        preds.append(fold_dir / "predictions.csv")
        done_now += 1
    complete = len(rows) == k
    summary = {**pinned, "folds_done": len(rows), "complete": complete, "folds": rows,
               "pooled": _pooled(preds) if rows else {}}
    if len(rows) > 1:
        summary["mean"], summary["sd"] = mean_sd(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary


def summary_markdown(s: dict) -> str:
    """A protocol summary as Markdown: the pooled row, then per-fold rows with mean ± sd."""
    head = (f"{s['protocol']} ({s.get('method', 'finetune')}) on {s['data']} ({s['folds_done']} of {s['k']} folds done; seed {s['seed']}; "
            f"{s['condition']}; detector {s['detector']}; end to end through AgeEstimator)\n\n")
    p = s.get("pooled") or {}
    if p:
        head += (f"pooled over every held-out image: n {p['n']}, MAE {p['mae']:.2f}, R^2 {p['r2']:.3f}, CS@5 "
                 f"{p['cs5']:.1%}, 3-class {p['thesis_3class_accuracy']:.1%}, faces missed {p['faces_missed']}\n\n")
    if "mean" in s and len(s["folds"]) <= 50:
        head += fold_table("fold", [(r["fold"], r["n"], r) for r in s["folds"]], s["mean"], s["sd"])
    return head


def build_parser() -> argparse.ArgumentParser:
    from agescan.train.loop import build_parser as fit_parser

    p = fit_parser("agescan train cv")
    p.description = __doc__.split("\n\n")[0]
    p.epilog = "Every `agescan train fit` option above applies to each fold. " + __doc__.split("\n\n", 2)[2]
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p._actions[1].help = "prepared crops (.npz from agescan train prepare; keeps subject ids and image paths)"
    p._actions[2].help = "protocol folder: OUT/fold-NAME per fold, OUT/summary.json and summary.md"
    g = p.add_argument_group("protocol")
    g.add_argument("--protocol", default="kfold", choices=TRAIN_PROTOCOLS,
                   help="kfold: subject-disjoint k-fold; random-kfold: rows at random (people on both sides); lopo: "
                        "leave one subject out; logo: leave one --group-column value out (default: kfold)")
    g.add_argument("--folds", type=int, default=5, help="k of kfold and random-kfold (default: 5)")
    g.add_argument("--subject-column", default="subject", help="column of subject ids (default: subject)")
    g.add_argument("--group-column", default="", help="column of groups for --protocol logo")
    g.add_argument("--condition", default="clean",
                   help="evaluation condition of the held-out folds: clean or a privacy transform, as for "
                        "`agescan evaluate --condition` (default: clean)")
    g.add_argument("--detector", default=None, help="face detector of the evaluation (default: the pipeline's)")
    g.add_argument("--eval-threads", type=int, default=1, help="onnxruntime threads of the evaluation (default: 1)")
    g.add_argument("--method", default="finetune", choices=METHODS,
                   help="finetune: `train fit` per fold; features: the thesis' baseline, pooled features of the "
                        "frozen --init network -> a linear scikit-learn regressor chosen by inner CV (default: finetune)")
    g.add_argument("--regressors", default="",
                   help="with --method features: the candidates the inner CV chooses among, comma-separated (default: "
                        "ridge,lasso,huber)")
    g.add_argument("--max-folds", type=int, default=0, metavar="N",
                   help="stop after N more folds (time-sliced runs; rerun the same command to continue)")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["summarise"]:
        p = argparse.ArgumentParser(prog="agescan train cv summarise",
                                    description="Summarise hand-made `train fit --fold/--holdout` runs (heldout.json).")
        p.add_argument("runs", nargs="+", help="run folders trained with --fold or --holdout")
        p.add_argument("--out", help="also write the summary JSON here")
        a = p.parse_args(argv[1:])
        s = summarise(a.runs)
        if a.out:
            Path(a.out).write_text(json.dumps(s, indent=2))
        sys.stdout.write(markdown(s))
        return
    a = vars(build_parser().parse_args(argv))
    for opt in ("fold", "fold_by", "holdout"):
        if a.pop(opt):
            raise SystemExit(f"agescan train cv: --{opt.replace('_', '-')} is set by --protocol for each fold; "
                             "leave it out.")
    a.pop("resume")  # a protocol always resumes
    proto = {k: a.pop(k) for k in ("protocol", "folds", "subject_column", "group_column", "condition", "detector",
                                   "eval_threads", "max_folds", "method", "regressors")}
    data, out = a.pop("data"), a.pop("out")
    s = run_protocol(data, out, a, protocol=proto["protocol"], k=proto["folds"], seed=a["fold_seed"],
                     subject_column=proto["subject_column"], group_column=proto["group_column"],
                     condition=proto["condition"], detector=proto["detector"], eval_threads=proto["eval_threads"],
                     max_folds=proto["max_folds"], method=proto["method"],
                     regressors=tuple(x for x in proto["regressors"].split(",") if x))
    sys.stdout.write(summary_markdown(s))


if __name__ == "__main__":
    main()
