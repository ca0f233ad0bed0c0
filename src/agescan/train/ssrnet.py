"""SSR-Net (Yang et al., IJCAI 2018) as the main paper uses it: two streams, stages (3, 3, 3), soft
stagewise regression; loads the authors' Keras weights (../shared/models/ssrnet, Apache-2.0) with h5py.

Input: N x 3 x 64 x 64 **BGR** pixels in 0..255 (no mean/std), as the authors trained. Output: age in
years, ``V * sum_k sum_i (i + lambda_local * eta_k[i]) p_k[i] / prod_{j<=k} s_j (1 + lambda_d delta_j)``
with V = 101. Keras conventions are reproduced: 3x3 *valid* convolutions, BatchNorm epsilon 1e-3,
channels-last flattening, ``floor`` pooling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, act: str):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = torch.relu if act == "relu" else torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def _flat(x: torch.Tensor) -> torch.Tensor:
    """Keras' channels-last Flatten of an NCHW tensor."""
    return x.permute(0, 2, 3, 1).flatten(1)


class _Stage(nn.Module):
    def __init__(self, n_flat: int, bins: int = 3):
        super().__init__()
        self.delta = nn.Linear(n_flat, 1)
        self.s_fc = nn.Linear(n_flat, bins)
        self.x_fc = nn.Linear(n_flat, bins)
        self.mix = nn.Linear(bins, 2 * bins)
        self.pred = nn.Linear(2 * bins, bins)
        self.local = nn.Linear(2 * bins, bins)
        self.dropout = nn.Dropout(0.2)

    def forward(self, s: torch.Tensor, x: torch.Tensor):
        delta = torch.tanh(self.delta(s * x))
        h = torch.relu(self.mix(torch.relu(self.s_fc(self.dropout(s))) * torch.relu(self.x_fc(self.dropout(x)))))
        return torch.relu(self.pred(h)), torch.tanh(self.local(h)), delta


class SSRNet(nn.Module):
    """SSR-Net with stages (3, 3, 3), lambda_local = lambda_d = 1, output scale V = 101."""

    def __init__(self, stages=(3, 3, 3), lambda_local: float = 1.0, lambda_d: float = 1.0, v: float = 101.0):
        super().__init__()
        self.stages, self.lambda_local, self.lambda_d, self.v = tuple(stages), lambda_local, lambda_d, v
        self.x_blocks = nn.ModuleList([_Block(3, 32, "relu")] + [_Block(32, 32, "relu") for _ in range(3)])
        self.s_blocks = nn.ModuleList([_Block(3, 16, "tanh")] + [_Block(16, 16, "tanh") for _ in range(3)])
        self.s_1x1 = nn.ModuleList([nn.Conv2d(16, 10, 1) for _ in range(3)])
        self.x_1x1 = nn.ModuleList([nn.Conv2d(32, 10, 1) for _ in range(3)])
        self.heads = nn.ModuleList([_Stage(160, stages[0]), _Stage(90, stages[1]), _Stage(90, stages[2])])

    def forward(self, bgr: torch.Tensor) -> torch.Tensor:
        """N x 3 x 64 x 64 BGR 0..255 -> N ages in years."""
        x, s = bgr, bgr
        xs, ss = [], []
        for i in range(4):
            x, s = self.x_blocks[i](x), self.s_blocks[i](s)
            if i < 3:
                x, s = F.avg_pool2d(x, 2), F.max_pool2d(s, 2)
            xs.append(x)
            ss.append(s)
        # stage 1: last blocks (4x4); stage 2: after the 2nd pooling (14x14 -> 3x3); stage 3: after the 1st (31 -> 3)
        maps = [(ss[3], xs[3], 1), (ss[1], xs[1], 4), (ss[0], xs[0], 8)]
        age: torch.Tensor | None = None  # (built from the batch, so an exported graph keeps a dynamic batch size)
        denom: torch.Tensor | None = None
        for k, ((sm, xm, pool), head) in enumerate(zip(maps, self.heads)):
            sf = torch.relu(self.s_1x1[k](sm))
            xf = torch.relu(self.x_1x1[k](xm))
            if pool > 1:
                sf, xf = F.max_pool2d(sf, pool), F.avg_pool2d(xf, pool)
            p, eta, delta = head(_flat(sf), _flat(xf))
            idx = torch.arange(self.stages[k], dtype=bgr.dtype, device=bgr.device)
            factor = self.stages[k] * (1 + self.lambda_d * delta[:, 0])
            denom = factor if denom is None else denom * factor
            term = ((idx + self.lambda_local * eta) * p).sum(1) / denom
            age = term if age is None else age + term
        return age * self.v


def load_keras_weights(model: SSRNet, h5_path: str | Path) -> SSRNet:
    """Copy the authors' Keras 2 HDF5 weights into ``model`` (layer names as in the SSR-Net release)."""
    import h5py

    with h5py.File(h5_path, "r") as f:
        def w(layer: str, name: str) -> torch.Tensor:
            return torch.from_numpy(np.asarray(f[f"{layer}/{layer}/{name}:0"], dtype=np.float32))

        def conv(dst: nn.Conv2d, layer: str) -> None:
            dst.weight.data = w(layer, "kernel").permute(3, 2, 0, 1).contiguous()
            dst.bias.data = w(layer, "bias")

        def dense(dst: nn.Linear, layer: str) -> None:
            dst.weight.data = w(layer, "kernel").t().contiguous()
            dst.bias.data = w(layer, "bias")

        def bn(dst: nn.BatchNorm2d, layer: str) -> None:
            dst.weight.data, dst.bias.data = w(layer, "gamma"), w(layer, "beta")
            dst.running_mean.data, dst.running_var.data = w(layer, "moving_mean"), w(layer, "moving_variance")

        for i in range(4):
            conv(model.x_blocks[i].conv, f"conv2d_{i + 1}")
            bn(model.x_blocks[i].bn, f"batch_normalization_{i + 1}")
            conv(model.s_blocks[i].conv, f"conv2d_{i + 5}")
            bn(model.s_blocks[i].bn, f"batch_normalization_{i + 5}")
        for k in range(3):
            conv(model.s_1x1[k], f"conv2d_{9 + 2 * k}")
            conv(model.x_1x1[k], f"conv2d_{10 + 2 * k}")
            head = model.heads[k]
            dense(head.delta, f"delta_s{k + 1}")
            dense(head.s_fc, f"dense_{3 * k + 1}")
            dense(head.x_fc, f"dense_{3 * k + 2}")
            dense(head.mix, f"dense_{3 * k + 3}")
            dense(head.pred, f"pred_age_stage{k + 1}")
            dense(head.local, f"local_delta_stage{k + 1}")
    return model
