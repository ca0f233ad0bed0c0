"""Detectors that ship inside the agescan package, with the sha256 of each file (checked at load).

Cards (licence, training data, threshold, measured face-size range and metrics) travel inside each ONNX file;
``agescan models`` prints them.
"""

from agescan.detect.yunet import packaged

packaged("yunet-s.wider", "yunet-s.wider.onnx",
         "e9045ed9a7f5d8830c8b449918e3fabc567cfd2de8ae4f767fd3641f58f9c553",
         "YuNet-s as its authors trained it on WIDER FACE (Apache-2.0 checkpoint, converted by tools/convert_yunet.py).")
packaged("yunet-s-ocl.utkface", "yunet-s-ocl.utkface.onnx",
         "a6bca6870fffcbfd7bd66789427cd82e1bcc8411ae03a0dd27313a0ce62db011",
         "YuNet-s fine-tuned by agescan on UTKFace train faces with covered eyes (50%), babies and small faces pasted "
         "into face-free backgrounds; thresholds calibrated on val (non-commercial research data: see its card).")
