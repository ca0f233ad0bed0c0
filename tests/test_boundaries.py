"""The inference path stays free of torch and of the training/evaluation packages."""

from __future__ import annotations

import subprocess
import sys


def test_inference_does_not_import_torch_or_training():
    code = ("import sys, numpy as np, agescan\n"
            "from agescan import AgeEstimator\n"
            "AgeEstimator().predict(np.zeros((64, 64, 3), np.uint8))\n"
            "from skimage import data\n"
            "AgeEstimator().explain(data.astronaut(), 'occlusion')\n"
            "import agescan.cli.main, agescan.service.app, agescan.scan, agescan.explain, agescan.decisions\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'h5py') "
            "or m.startswith(('agescan.train', 'agescan.eval', 'agescan.export')))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"inference imported: {out.stdout.strip()}"


def test_import_has_no_side_effects():
    # numpy, Pillow and OpenCV register filters of their own when imported; agescan must add none.
    code = ("import warnings, numpy, PIL.Image, cv2; before = list(warnings.filters); import agescan\n"
            "assert list(warnings.filters) == before, 'agescan changed the global warning filters'\n"
            "import sys; assert 'onnxruntime' not in sys.modules, 'models must load lazily, not at import'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
