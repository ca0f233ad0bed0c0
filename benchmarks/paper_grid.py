"""The main paper's Tables 2-3 on UTKFace: SSR-Net trained on ages 0-25 with N images per age x {org, ocl,
org+ocl} x initialisation (scratch, the authors' IMDB / MORPH2 weights), each evaluated on the test faces aged
0-25, clean and with the eye band, with Impv against the pretrained baselines.

    python benchmarks/paper_grid.py runs/data/utkface_96.npz runs/grid --epochs 10 --threads 1

Every cell is a run directory (resumable: a finished cell is not trained again) trained by
``agescan.train.loop`` with the same settings except the three factors. Evaluation here uses the prepared
test crops (MTCNN landmarks, aligned, as in training) so all cells see exactly the same inputs; the eye band
is drawn from each face's detected eyes exactly as in training. Writes ``grid.json`` and ``grid.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from _common import shared_dir

from agescan.eval.metrics import group_accuracy, impv
from agescan.train.loop import TrainConfig, add_eye_bands, build_for, eye_positions, predict_logits, train
from agescan.train.nets import build, load_init

INITS = {"scratch": "", "imdb": "imdb", "morph2": "morph2"}


def keras_weights(name: str) -> str:
    return str(shared_dir() / "models" / "ssrnet" / name / "ssrnet_3_3_3_64_1.0_1.0.h5") if name else ""


def test_inputs(data: str, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.load(data)
    te = (d["split"] == "test") & (d["age"] <= 25)
    crops, ages = d["crops"][te], d["age"][te].astype(np.int64)
    eyes = eye_positions(d["landmarks"][te], int(d["crop_size"]), float(d["crop_margin"]))
    banded = add_eye_bands(crops, eyes, "ocl", torch.Generator().manual_seed(seed))
    return crops, banded, ages


def score(model, cfg: TrainConfig, crops: np.ndarray, ages: np.ndarray) -> dict:
    from agescan.train.loop import metrics

    probs = torch.softmax(predict_logits(model, crops, cfg), 1).numpy()
    m = metrics(probs, ages)  # point age and minor rule of agescan.decisions
    from agescan.decisions import point_age

    return {"mae": m["mae"], "group_acc": float(group_accuracy(ages, point_age(probs))),
            "minor_recall": m["minor_recall"]}


def evaluate(model, cfg: TrainConfig, test) -> dict:
    crops, banded, ages = test
    return {"clean": score(model, cfg, crops, ages), "band": score(model, cfg, banded, ages)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--per-age", default="250,0", help="comma-separated N images per age (0 = all available)")
    p.add_argument("--occlusion", default="org,ocl,org+ocl")
    p.add_argument("--init", default="scratch,imdb")
    p.add_argument("--compare", nargs="*", default=[], metavar="RUN",
                   help="also evaluate these finished training runs (any architecture, e.g. the shipped default's "
                        "run) on the same test inputs, as rows of the table")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    test = test_inputs(a.data)
    results = json.loads((out / "grid.json").read_text()) if (out / "grid.json").exists() else {}
    base_cfg = TrainConfig(data=a.data, out="", arch="ssrnet")
    for init in a.init.split(","):  # the pretrained baselines, as the paper's Impv compares against them
        if init != "scratch" and f"pretrained-{init}" not in results:
            net = build("ssrnet")
            load_init(net, keras_weights(INITS[init]))
            results[f"pretrained-{init}"] = evaluate(net, base_cfg, test)
    for n, occ, init in itertools.product([int(x) for x in a.per_age.split(",")], a.occlusion.split(","),
                                          a.init.split(",")):
        key = f"n{n or 'all'}-{occ}-{init}"
        if key in results:
            continue
        cfg = TrainConfig(data=a.data, out=str(out / key), arch="ssrnet", epochs=a.epochs, lr=1e-3, clip_grad=5.0,
                          weight_decay=0.0, per_age=n, age_range="0-25", occlusion=occ,
                          init=keras_weights(INITS[init]), threads=a.threads)
        print(f"--- {key}", file=sys.stderr, flush=True)
        train(cfg, resume=True)
        net = build("ssrnet")
        net.load_state_dict(torch.load(Path(cfg.out) / "best.pt", weights_only=False)["model"])
        results[key] = evaluate(net, cfg, test)
        results[key]["best_epoch"] = int(torch.load(Path(cfg.out) / "best.pt", weights_only=False)["epoch"]) + 1
        (out / "grid.json").write_text(json.dumps(results, indent=2))
    for run in a.compare:
        cfg = TrainConfig(**json.loads((Path(run) / "config.json").read_text()))
        net = build_for(cfg, load_first=False)
        net.load_state_dict(torch.load(Path(run) / "best.pt", weights_only=False)["model"])
        results[f"run {Path(run).name}"] = evaluate(net, cfg, test)
    (out / "grid.json").write_text(json.dumps(results, indent=2))
    (out / "grid.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    rows = ["| cell (N per age - training - init) | MAE clean | MAE band | 5-group clean | 5-group band | "
            "Impv clean | Impv band |", "|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        init = key.rsplit("-", 1)[-1] if key.startswith("n") else ""
        base = results.get(f"pretrained-{init}")
        iv = (f"{impv(base['clean']['mae'], r['clean']['mae']):+.1f}% | {impv(base['band']['mae'], r['band']['mae']):+.1f}%"
              if base and not key.startswith("pretrained") else "- | -")
        rows.append(f"| {key} | {r['clean']['mae']:.2f} | {r['band']['mae']:.2f} | {r['clean']['group_acc']:.1%} | "
                    f"{r['band']['group_acc']:.1%} | {iv} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
