"""Detectors that ship inside the agescan package, with the sha256 of each file (checked at load).

Cards (licence, training data, threshold, measured face-size range and metrics) travel inside each ONNX file;
``agescan models`` prints them.
"""

from agescan.detect.yunet import packaged

packaged("yunet-s.wider", "yunet-s.wider.onnx",
         "aa8be3ac9700b68012088cbb612b05af7b22ef4cbe264f22b6dbda45487131e6",
         "YuNet-s as its authors trained it on WIDER FACE (Apache-2.0 checkpoint, converted by tools/convert_yunet.py).")
