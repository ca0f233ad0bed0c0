"""The web page's face detector: which registered detector the browser runs, and its weights.

The page (``static/page.js``) finds faces itself, in the browser, before anything is uploaded: it runs a
YuNet-family detector with its own small ONNX interpreter (no third-party script) from the very file the registry
ships, configured by the card inside it (input colour order, strides, threshold, face sizes), and checks the file's
sha256 against the one served here. The service's own detector is used when it is YuNet-family; otherwise the first
registered YuNet-family detector.
"""

from __future__ import annotations

from dataclasses import dataclass

from agescan.detect import DEFAULT_DETECTOR, YuNetDetector, create_detector, list_detectors
from agescan.errors import ConfigError

#: The ONNX operators page.js implements (tests check every YuNet-family detector uses only these).
BROWSER_OPS = frozenset({"Add", "BatchNormalization", "Concat", "Constant", "Conv", "Gather", "LeakyRelu", "MaxPool",
                         "Mul", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Transpose", "Unsqueeze"})


@dataclass(frozen=True)
class BrowserDetector:
    """A YuNet-family detector the page runs: its name, card, the file's sha256 and bytes."""

    name: str
    sha256: str
    card: dict
    data: bytes

    def public(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "card": self.card, "bytes": len(self.data),
                "url": "/v1/browser-detector.onnx"}


def browser_detector(preferred: str = DEFAULT_DETECTOR) -> BrowserDetector:
    """The detector the page runs: ``preferred`` when YuNet-family, else the first registered YuNet-family one."""
    for name in [preferred] + [n for n in list_detectors() if n != preferred]:
        det = create_detector(name)
        if isinstance(det, YuNetDetector):
            det.load()
            return BrowserDetector(det.name, det.sha256, det.card.to_dict(), det.path.read_bytes())
    raise ConfigError("The web page needs a YuNet-family face detector and none is registered; serve with --no-page.")
