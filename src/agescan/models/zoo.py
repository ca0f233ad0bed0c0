"""Models that ship inside the agescan package, with the sha256 of each file (checked at load)."""

from agescan.models.registry import packaged

# Trained by agescan on UTKFace (non-commercial research licence); card: weights/dexnet-m.utkface.md.
packaged("dexnet-m.utkface", "dexnet-m.utkface.onnx",
         "1b219fa515eb2740c10104b8be5592c014d53656a6439593fd00dfe0244a309f")
