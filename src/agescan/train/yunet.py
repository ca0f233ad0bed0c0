"""YuNet (Wu, Peng and Yu, 2023; libfacedetection.train): a ~75k-parameter anchor-free face detector with five
landmarks, rebuilt in torch so agescan can fine-tune it on its own faces (eye band, babies, small faces).

Layout (module names follow the authors' checkpoints, so ``yunet_s.pth`` loads as it is):

* backbone: ``model0`` = 3x3/2 convolution + BN + ReLU and one depthwise unit; ``model1..5`` = two depthwise
  units each; a 2x2 max-pool follows models 0, 2, 3 and 4, so models 3, 4 and 5 give strides 8, 16 and 32.
  A *depthwise unit* is a 1x1 convolution, a 3x3 depthwise convolution, then BN + ReLU.
* neck: a top-down path: each level's depthwise unit, upsampled x2 (nearest) and added to the level below.
* head: per level four depthwise units without BN/ReLU: class score, objectness, box (dx, dy, log w, log h in
  stride units, relative to the grid point) and 10 landmark offsets (in stride units, relative to the point).

Input: BGR pixels 0..255 (no normalisation; the authors' ``img_norm_cfg``), height and width multiples of 32.
The outputs are exactly those of the authors' ONNX export (``cls_8 .. kps_32``, logits passed through a sigmoid
for class and objectness), so :mod:`agescan.detect.yunet` decodes both. Score = sqrt(class * objectness).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (8, 16, 32)
#: Output names of the exported graph, in order (the authors' names).
OUTPUT_NAMES = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)


class DPUnit(nn.Module):
    """1x1 convolution, 3x3 depthwise convolution, optionally BN + ReLU."""

    def __init__(self, cin: int, cout: int, bn_relu: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, groups=cout)
        self.bn = nn.BatchNorm2d(cout) if bn_relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x))
        return F.relu(self.bn(x)) if self.bn is not None else x


class Stem(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = DPUnit(mid, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn1(self.conv1(x))))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = DPUnit(cin, cin)
        self.conv2 = DPUnit(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class Backbone(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.model0 = Stem(3, 16, 16)
        self.model1 = Block(16, 32)
        self.model2 = Block(32, width)
        self.model3 = Block(width, width)
        self.model4 = Block(width, width)
        self.model5 = Block(width, width)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(self.model0(x), 2)
        x = F.max_pool2d(self.model2(self.model1(x)), 2)
        c3 = self.model3(x)
        c4 = self.model4(F.max_pool2d(c3, 2))
        c5 = self.model5(F.max_pool2d(c4, 2))
        return [c3, c4, c5]


class Neck(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.lateral_convs = nn.ModuleList(DPUnit(width, width) for _ in STRIDES)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = list(feats)
        for i in range(len(feats) - 1, 0, -1):
            feats[i] = self.lateral_convs[i](feats[i])
            feats[i - 1] = feats[i - 1] + F.interpolate(feats[i], scale_factor=2.0, mode="nearest")
        feats[0] = self.lateral_convs[0](feats[0])
        return feats


class Head(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.multi_level_cls = nn.ModuleList(DPUnit(width, 1, False) for _ in STRIDES)
        self.multi_level_obj = nn.ModuleList(DPUnit(width, 1, False) for _ in STRIDES)
        self.multi_level_bbox = nn.ModuleList(DPUnit(width, 4, False) for _ in STRIDES)
        self.multi_level_kps = nn.ModuleList(DPUnit(width, 10, False) for _ in STRIDES)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> N x (H*W) x C, row-major grid order (the decoder's)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class YuNet(nn.Module):
    """The YuNet-s detector. ``forward`` returns raw logits per level (for training); :meth:`export_outputs`
    the authors' 12 output tensors (sigmoid applied to class and objectness), which the ONNX export holds."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.backbone = Backbone(width)
        self.neck = Neck(width)
        self.bbox_head = Head(width)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        feats = self.neck(self.backbone(x))
        h = self.bbox_head
        return [(_flat(h.multi_level_cls[i](f)), _flat(h.multi_level_obj[i](f)), _flat(h.multi_level_bbox[i](f)),
                 _flat(h.multi_level_kps[i](f))) for i, f in enumerate(feats)]

    def export_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        levels = self.forward(x)
        cls = [torch.sigmoid(lv[0]) for lv in levels]
        obj = [torch.sigmoid(lv[1]) for lv in levels]
        return (*cls, *obj, *[lv[2] for lv in levels], *[lv[3] for lv in levels])


class _Export(nn.Module):
    def __init__(self, net: YuNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net.export_outputs(x)


def load_checkpoint(net: YuNet, path: str | Path) -> YuNet:
    """Load an MMDetection-style YuNet checkpoint (the authors' ``yunet_s.pth``) or one of our own state dicts.

    Only tensors are read (``weights_only``); every parameter of ``net`` must be present with its shape.
    """
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    net.load_state_dict(state, strict=True)
    return net


def export(net: YuNet, card, path: str | Path, opset: int = 17) -> tuple[Path, str]:
    """Export to ONNX (dynamic batch, height and width) with the detector ``card`` embedded; returns the path and
    the sha256 of the written file."""
    import hashlib
    import io
    import warnings

    from agescan.detect.card import DETECTOR_CARD_KEY
    from agescan.export import embed_card

    # The wrapper is put in eval mode too: the exporter restores the *wrapper's* mode afterwards, recursively, and a
    # wrapper left in training mode would silently switch the caller's network to batch statistics.
    wrapper = _Export(net.eval()).eval()
    buf = io.BytesIO()
    dyn = {"input": {0: "batch", 2: "height", 3: "width"}}
    dyn.update({name: {0: "batch", 1: "points"} for name in OUTPUT_NAMES})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(wrapper, (torch.zeros(1, 3, 320, 320),), buf, input_names=[card.input_name],
                          output_names=list(OUTPUT_NAMES), dynamic_axes=dyn, opset_version=opset, dynamo=False)
    data = embed_card(buf.getvalue(), card, DETECTOR_CARD_KEY)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def parity(net: YuNet, path: str | Path, size: tuple[int, int] = (480, 640), seed: int = 0) -> float:
    """Max absolute difference between torch and onnxruntime outputs on a random image of ``size``."""
    import onnxruntime as ort

    x = np.random.default_rng(seed).integers(0, 256, (1, 3, *size)).astype(np.float32)
    sess = ort.InferenceSession(Path(path).read_bytes(), providers=["CPUExecutionProvider"])
    got = sess.run(list(OUTPUT_NAMES), {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        want = net.eval().export_outputs(torch.from_numpy(x))
    return float(max(np.abs(g - w.numpy()).max() for g, w in zip(got, want)))
