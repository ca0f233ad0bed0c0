"""Convert the authors' YuNet-s checkpoint (libfacedetection.train, Apache-2.0) to agescan's ONNX with a card.

Run once by a developer; the output is committed as package data under ``src/agescan/detect/weights/``. The
checkpoint is read as tensors only (``torch.load(weights_only=True)``) into agescan's own torch rebuild of the
network (:mod:`agescan.train.yunet`), exported with a dynamic input size, and checked against torch; with
``--reference`` (the authors' ``yunet_s_640_640.onnx``) also against the authors' own export.

    .venv/bin/python tools/convert_yunet.py ../shared/models/detectors/yunet/yunet_s.pth \\
        src/agescan/detect/weights/yunet-s.wider.onnx \\
        --reference ../shared/models/detectors/yunet/yunet_s_640_640.onnx --card card.json

``--card`` is a JSON file of detector-card fields (the thresholds chosen on val by
``agescan.train.detector.calibrate``, the face-size range, metrics); ``id``, ``architecture``, licence and training
data default to the WIDER FACE weights'. The shipped file: ``--card`` holding ``score_threshold`` 0.7,
``size_thresholds`` [[16, 0.5], [32, 0.76]], ``min_face_px`` 16, ``max_face_px`` 256 and the calibration's val
numbers (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from agescan.detect.card import DetectorCard  # noqa: E402
from agescan.train.yunet import YuNet, export, load_checkpoint, parity  # noqa: E402

WIDER_CARD = {
    "id": "yunet-s.wider",
    "architecture": "YuNet-s (Wu, Peng and Yu 2023): depthwise backbone, 3-level top-down neck, anchor-free "
                    "heads at strides 8/16/32; 54,608 parameters; box + 5 landmarks",
    "licence": "Apache-2.0 (libfacedetection.train checkpoint yunet_s.pth, Shiqi Yu et al.); the authors' ONNX "
               "export of the same weights is MIT in OpenCV Zoo (face_detection_yunet_2023mar.onnx)",
    "training_data": "WIDER FACE train (Yang et al. 2016) with RetinaFace's landmark annotations, by the authors; "
                     "not trained by agescan",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="yunet_s.pth (MMDetection-style state dict)")
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--reference", help="the authors' yunet_s_640_640.onnx, to check our rebuild against")
    p.add_argument("--card", help="JSON file of detector-card fields (measured threshold, face-size range, ...)")
    a = p.parse_args(argv)
    net = load_checkpoint(YuNet(), a.checkpoint).eval()
    fields = dict(WIDER_CARD)
    fields["training"] = {"source": Path(a.checkpoint).name,
                          "source_sha256": hashlib.sha256(Path(a.checkpoint).read_bytes()).hexdigest(),
                          "converted_by": "tools/convert_yunet.py"}
    if a.card:
        extra = json.loads(Path(a.card).read_text())
        fields["training"] = {**fields["training"], **extra.pop("training", {})}
        fields.update(extra)
    card = DetectorCard.from_dict(fields)
    if a.reference:
        import onnxruntime as ort
        import torch

        sess = ort.InferenceSession(a.reference, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).integers(0, 256, (1, 3, 640, 640)).astype(np.float32)
        ref = sess.run(None, {"input": x})
        with torch.no_grad():
            ours = net.export_outputs(torch.from_numpy(x))
        diff = max(float(np.abs(r - o.numpy()).max()) for r, o in zip(ref, ours))
        print(f"torch rebuild vs the authors' ONNX: max abs difference {diff:.2e}")
        if diff > 1e-4:
            raise SystemExit("the rebuild does not reproduce the authors' network; not writing")
    path, sha = export(net, card, a.out)
    diff = parity(net, path)
    print(f"{path}: sha256 {sha}, torch vs onnxruntime max abs difference {diff:.2e}")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
