"""Detectors that ship inside the agescan package, with the sha256 of each file (checked at load).

Cards (licence, training data, threshold, measured face-size range and metrics) travel inside each ONNX file;
``agescan models`` prints them.
"""

from agescan.detect.base import detectors
from agescan.detect.cascade import CascadeDetector
from agescan.detect.yunet import packaged

packaged("yunet-s.wider", "yunet-s.wider.onnx",
         "e9045ed9a7f5d8830c8b449918e3fabc567cfd2de8ae4f767fd3641f58f9c553",
         "YuNet-s as its authors trained it on WIDER FACE (Apache-2.0 checkpoint, converted by tools/convert_yunet.py).")
packaged("yunet-s-ocl.utkface", "yunet-s-ocl.utkface.onnx",
         "a6bca6870fffcbfd7bd66789427cd82e1bcc8411ae03a0dd27313a0ce62db011",
         "YuNet-s fine-tuned by agescan on UTKFace train faces with covered eyes (50%), babies and small faces pasted "
         "into face-free backgrounds; thresholds calibrated on val (non-commercial research data: see its card).")


@detectors.register("yunet-s-ocl+wider")
def _cascade(min_face_size: int = 24, score_threshold: float | None = None, threads: int = 0) -> CascadeDetector:
    """yunet-s-ocl.utkface, plus yunet-s.wider's detections of faces it does not find (turned and in-the-wild
    faces), the second looking only for faces from 4/3 of ``min_face_size`` (the first covers the small ones)."""
    return CascadeDetector("yunet-s-ocl+wider",
                           detectors.create("yunet-s-ocl.utkface", min_face_size=min_face_size,
                                            score_threshold=score_threshold, threads=threads),
                           detectors.create("yunet-s.wider", min_face_size=max(12, round(min_face_size * 4 / 3)),
                                            threads=threads))
