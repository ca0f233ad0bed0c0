"""Models that ship inside the agescan package, with the sha256 of each file (checked at load)."""

from agescan.models.registry import packaged

# Both trained by agescan on UTKFace (non-commercial research licence); cards: weights/<id>.md.
# The default: trained with the paper's eye band on half the faces (org+ocl); robust to redacted eyes.
packaged("dexnet-m-ocl.utkface", "dexnet-m-ocl.utkface.onnx",
         "9051fe1adc24fafb8be46290aa6c4bb3e3208ef903d5dd4b40df714dc6e8c315")
# Trained on clean faces only (org): slightly better on clean faces, fails on banded ones.
packaged("dexnet-m.utkface", "dexnet-m.utkface.onnx",
         "1b219fa515eb2740c10104b8be5592c014d53656a6439593fd00dfe0244a309f")
