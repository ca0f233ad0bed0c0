"""Gradient maps (Grad-CAM, input sensitivity) of an age model rebuilt in torch from its ONNX file (``train`` extra).

The ONNX files agescan exports keep torch's parameter names (``net.nets.0.blocks.4.conv2.weight``, float16 weights
as ``...__f16``), so a published ResNet-10 ensemble (:mod:`agescan.train.resnet10`, the default model's family) is
rebuilt exactly: the same :class:`~agescan.train.nets.ProbsWrapper` (temperature, mirrored face averaged in) around the
same :class:`~agescan.train.nets.Ensemble`. The rebuilt network must reproduce onnxruntime's probabilities on the face
being explained (:data:`PARITY_TOLERANCE`) or nothing is drawn. Other families (DexNet, SSR-Net) fold their batch
norms at export, so their parameter names are lost: explain them by occlusion, or from a training run.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import torch

from agescan.errors import ConfigError
from agescan.explain import normalise

#: Largest |torch - onnxruntime| probability difference accepted on the explained faces.
PARITY_TOLERANCE = 2e-3
_CACHE: dict[str, torch.nn.Module] = {}


def rebuild(model) -> torch.nn.Module:
    """The torch network of an :class:`~agescan.models.onnx_model.OnnxAgeModel` (a ResNet-10 ensemble), in eval
    mode; cached per file sha256."""
    import onnx
    from onnx import numpy_helper

    from agescan.train.nets import Ensemble, ProbsWrapper
    from agescan.train.resnet10 import ResNet10

    model.load()
    if model.sha256 in _CACHE:
        return _CACHE[model.sha256]
    graph = onnx.load_model_from_string(model.path.read_bytes()).graph
    state = {}
    for init in graph.initializer:
        name = init.name.removesuffix("__f16")
        state[name] = torch.from_numpy(numpy_helper.to_array(init).astype(np.float32))
    nets = sorted({int(m.group(1)) for k in state if (m := re.match(r"net\.nets\.(\d+)\.", k))})
    if not nets or "net.nets.0.stem.weight" not in state:
        raise ConfigError(f"{model.id}: Grad-CAM and input sensitivity need the torch network, which agescan rebuilds "
                          "only for ResNet-10 ensembles (their ONNX keeps the parameter names); use method "
                          "'occlusion' for this model.")
    flip = bool(model.card.training.get("test_time_flip", False))
    wrapper = ProbsWrapper(Ensemble([ResNet10(model.card.n_bins) for _ in nets]), 1.0, flip=flip)
    for i in nets:  # the exporter stores identical constants once (every network's input means)
        state.setdefault(f"net.nets.{i}.means", state.get("net.nets.0.means"))
    try:
        wrapper.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{model.id}: its ONNX weights do not fit the ResNet-10 ensemble ({exc}).") from None
    wrapper.eval()
    _CACHE[model.sha256] = wrapper
    return wrapper


def _check_parity(net, model, x: torch.Tensor, crops: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        p = net(x)
    diff = float(np.abs(p.numpy() - model.predict_probs(crops)).max())
    if diff > PARITY_TOLERANCE:
        raise ConfigError(f"{model.id}: the torch rebuild differs from onnxruntime by {diff:.2e} on this face; "
                          "no gradient map is drawn from a network that is not the one that estimated the age.")
    return p


def sensitivity(model, crop: np.ndarray, sigma: float = 2.5) -> np.ndarray:
    """APPA-REAL's sensitivity map of one aligned crop (S x S x 3 uint8): |d age / d input| as grey (L2 norm over
    the channels), normalised, smoothed by a Gaussian of ``sigma`` pixels, normalised to [0, 1]."""
    net = rebuild(model)
    crops = crop[None]
    x = torch.from_numpy(model.card.preprocess(crops)).requires_grad_(True)
    _check_parity(net, model, x.detach(), crops)
    p = net(x)
    ages = torch.arange(model.card.min_age, model.card.min_age + p.shape[1], dtype=p.dtype)
    (p * ages).sum().backward()
    grey = x.grad[0].norm(dim=0).numpy().astype(np.float32)
    return normalise(cv2.GaussianBlur(normalise(grey).astype(np.float32), (0, 0), sigma))


def gradcam(model, crop: np.ndarray) -> np.ndarray:
    """Grad-CAM of one aligned crop on each network's last convolutional block (3 x 3 cells for a 64-pixel crop: a
    coarse map), for the softmax output of the most probable age bin; the networks' (and the mirrored pass's,
    flipped back) maps summed, ReLU'd, upsampled to the crop and normalised to [0, 1] (all zeros when no region
    raises that output)."""
    net = rebuild(model)
    crops = crop[None]
    x = torch.from_numpy(model.card.preprocess(crops))
    p0 = _check_parity(net, model, x, crops)
    target = int(p0[0].argmax())  # the predicted class, as in the thesis
    acts: list[torch.Tensor] = []

    def keep(_module, _inputs, out: torch.Tensor) -> None:
        out.retain_grad()
        acts.append(out)

    hooks = [n.blocks[-1].register_forward_hook(keep) for n in net.net.nets]
    try:
        p = net(x)
        p[0, target].backward()
    finally:
        for h in hooks:
            h.remove()
    s = crop.shape[0]
    total = np.zeros((s, s), dtype=np.float32)
    flip, n_nets = net.flip, len(net.net.nets)
    for i, a in enumerate(acts):
        weights = a.grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * a).sum(1))[0].detach().numpy().astype(np.float32)
        cam = cv2.resize(cam, (s, s), interpolation=cv2.INTER_LINEAR)
        # every network runs the face, then (with flip) every network runs its mirror: flip those maps back
        if flip and i >= n_nets:
            cam = cam[:, ::-1]
        total += cam
    return normalise(total)
