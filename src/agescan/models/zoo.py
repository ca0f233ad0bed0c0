"""Models that ship inside the agescan package, with the sha256 of each file (checked at load)."""

from agescan.models.registry import packaged

packaged("dexnet-s.utkface", "dexnet-s.utkface.onnx",
         "0000000000000000000000000000000000000000000000000000000000000000")
