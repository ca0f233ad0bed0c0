"""Compact age networks with a DEX head (softmax over whole years, expectation = age)."""

from __future__ import annotations

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


ARCHITECTURES = {
    "dexnet-s": lambda n_bins: DexNet(n_bins),
    "dexnet-m": lambda n_bins: DexNet(n_bins, widths=(32, 64, 128, 128, 192, 192, 320)),
}


def build(name: str, n_bins: int = 101) -> nn.Module:
    try:
        return ARCHITECTURES[name](n_bins)
    except KeyError:
        raise ValueError(f"Unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}.") from None
