"""The web page's face detector: which registered detector the browser runs, and its weights.

The page (``static/page.js``) finds faces itself, in the browser, before anything is uploaded: it runs YuNet-family
detectors with its own small ONNX interpreter (no third-party script) from the very files the registry ships,
configured by the card inside each (input colour order, strides, thresholds by face size, face sizes), and checks
each file's sha256 against the one served here. The service's own detector is used when the page can run it: a
YuNet-family detector, or a cascade of two (the specialist's faces kept, the generalist's added where the
specialist has none: :mod:`agescan.detect.cascade`, whose rule page.js repeats); otherwise the first registered
YuNet-family detector.
"""

from __future__ import annotations

from dataclasses import dataclass

from agescan.detect import DEFAULT_DETECTOR, CascadeDetector, YuNetDetector, create_detector, list_detectors
from agescan.errors import ConfigError

#: The ONNX operators page.js implements (tests check every YuNet-family detector uses only these).
BROWSER_OPS = frozenset({"Add", "BatchNormalization", "Concat", "Constant", "Conv", "Gather", "LeakyRelu", "MaxPool",
                         "Mul", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Transpose", "Unsqueeze"})


@dataclass(frozen=True)
class Member:
    """One YuNet-family detector file the page runs: its name, card, sha256 and bytes."""

    name: str
    sha256: str
    card: dict
    data: bytes


@dataclass(frozen=True)
class BrowserDetector:
    """What the page runs: one YuNet-family detector, or a cascade of two (``members`` in order)."""

    name: str
    members: tuple[Member, ...]

    def public(self) -> dict:
        return {"name": self.name, "kind": "cascade" if len(self.members) > 1 else "single",
                "members": [{"name": m.name, "sha256": m.sha256, "card": m.card, "bytes": len(m.data),
                             "url": f"/v1/browser-detector/{i}.onnx"} for i, m in enumerate(self.members)]}

    def python_twin(self):
        """The same detection in Python (agescan's detectors at the page's scale: a photo of at most 640 px a side
        at full resolution), for measuring the page's flow and checking page.js against agescan."""
        dets = [create_detector(m.name, min_face_size=int(m.card["min_face_px"]), threads=1) for m in self.members]
        return dets[0] if len(dets) == 1 else CascadeDetector(self.name, *dets)


def _member(det: YuNetDetector) -> Member:
    det.load()
    return Member(det.name, det.sha256, det.card.to_dict(), det.path.read_bytes())


def browser_detector(preferred: str = DEFAULT_DETECTOR) -> BrowserDetector:
    """The detector the page runs: ``preferred`` when the page can run it, else the first registered YuNet-family
    detector."""
    for name in [preferred] + [n for n in list_detectors() if n != preferred]:
        det = create_detector(name)
        if isinstance(det, YuNetDetector):
            return BrowserDetector(det.name, (_member(det),))
        if isinstance(det, CascadeDetector) and all(isinstance(d, YuNetDetector) for d in (det.primary, det.secondary)):
            return BrowserDetector(det.name, (_member(det.primary), _member(det.secondary)))
    raise ConfigError("The web page needs a YuNet-family face detector and none is registered; serve with --no-page.")
