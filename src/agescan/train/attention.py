"""The paper's eye-masked attention model (issue 12; ../shared/papers/003): the network never uses the eyes.

The paper multiplies the backbone's last feature map G1 by an eye mask G2 resized to it (G3 = G1 * G2), then applies
a 1x1 convolution, pooling and the age head, so the network learns from the nose, mouth, cheeks and chin. Here:

- **The mask is fixed by the alignment.** Every face reaches the network warped to the five-point template of the
  model's crop recipe, so the eye region is the same pixels for every face: :func:`template_eye_keep` draws it with
  the privacy registry's own geometry (:func:`agescan.privacy.regions.eye_region_polygon`, the eye mask's region
  grown by 10%) on the template, and the ONNX graph holds it as a constant.
- **Where the mask goes.** ResNet-10's last feature map is 3x3 at the default 64-pixel input: one row would be a
  third of the face. The mask is applied instead at the deepest stage whose map has at least
  :data:`MIN_MAP` rows (7x7x128 at 64 px, after the third residual block), a cell being masked when the eye region
  covers at least half of it; a 1x1 convolution (started as the identity) follows, then the remaining blocks,
  pooling and the age head. The remaining blocks only ever see zeros where the eyes were.
- **The eye pixels themselves.** A cell that the feature mask keeps still sees ~40 pixels around it (the receptive
  field), eye pixels included: the paper's feature mask alone does not remove their influence. The model therefore
  also blanks the template eye region of its input (to black, as the eye-mask transform does), so its output does
  not depend on those pixels at all; tests check both by gradients and by ablation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: The names ``--attention`` accepts ('' = none).
ATTENTIONS = ("eyes",)
#: Smallest feature map (rows) the eye mask is applied to.
MIN_MAP = 6
#: A feature cell is masked when the eye region covers at least this share of it.
CELL_COVER = 0.5


def template_eye_cover(size: int, margin: float) -> np.ndarray:
    """The share (0..1) of each pixel of a ``size`` x ``size`` aligned crop (UTKFace template, ``margin``) inside the
    eye region: (size, size) float32, from the eye mask's region at 8x supersampling, made mirror-symmetric."""
    from agescan.align import CropRecipe
    from agescan.privacy.regions import eye_region_polygon, polygon_mask
    from agescan.types import Landmarks5

    k = 8
    dst = CropRecipe(size=size, margin=margin).destination() * k
    poly = eye_region_polygon(Landmarks5(tuple((float(x), float(y)) for x, y in dst)))
    fine = polygon_mask((size * k, size * k), poly).astype(np.float32)
    cover = fine.reshape(size, k, size, k).mean((1, 3))
    # the template is mirror-symmetric; so is the mask (test-time flip then blanks the same pixels)
    return np.maximum(cover, cover[:, ::-1])


def template_eye_keep(size: int, margin: float, grid: int | None = None) -> np.ndarray:
    """1 where the network may look, 0 on the eyes: at pixel level (``grid`` None: a pixel partly covered is blanked)
    or on a ``grid`` x ``grid`` feature map (a cell is masked when covered at least :data:`CELL_COVER`)."""
    cover = template_eye_cover(size, margin)
    if grid is None:
        return (cover == 0).astype(np.float32)
    edges = np.linspace(0, size, grid + 1)
    cells = np.zeros((grid, grid), np.float32)
    for i in range(grid):
        for j in range(grid):
            y0, y1, x0, x1 = edges[i], edges[i + 1], edges[j], edges[j + 1]
            ys, xs = np.arange(size) + 0.5, np.arange(size) + 0.5
            sel = cover[np.ix_((ys >= y0) & (ys < y1), (xs >= x0) & (xs < x1))]
            cells[i, j] = sel.mean() if sel.size else 0.0
    return (cells < CELL_COVER).astype(np.float32)


class _EyeMask(nn.Module):
    """What every eye-attention network shares: the input eye region blanked, the eye mask on the deepest feature
    stage with at least :data:`MIN_MAP` rows (G3 = G1 * G2), a 1x1 convolution started as the identity, then the
    remaining stages. A subclass gives its stages (:meth:`_stages`), what comes before them (:meth:`_pre`) and after
    them (:meth:`_pool_head`), and calls :meth:`_setup_mask` once its layers exist."""

    #: Parameters a shipped plain network does not have (``--init`` starts them fresh).
    fresh_params = ("att_conv.weight", "att_conv.bias")

    def _stages(self) -> nn.Sequential:
        raise NotImplementedError

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _pool_head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _setup_mask(self, input_size: int, margin: float) -> None:
        self.register_buffer("pixel_keep", torch.from_numpy(template_eye_keep(input_size, margin))[None, None])
        with torch.no_grad():  # the map sizes at this input size: the deepest stage with >= MIN_MAP rows
            x = self._pre(torch.zeros(1, 3, input_size, input_size))
            shapes = []
            for b in self._stages():
                x = b(x)
                shapes.append(tuple(x.shape[1:]))
        deep = [i for i, s in enumerate(shapes) if s[1] >= MIN_MAP]
        if not deep:
            raise ValueError(f"--attention eyes: every feature map is under {MIN_MAP} rows at input size "
                             f"{input_size}; use --input-size 64 or more.")
        self.stage = deep[-1] + 1
        c, h, w = shapes[self.stage - 1]
        if h != w:
            raise ValueError(f"--attention eyes: the feature map at stage {self.stage} is {h}x{w}, not square.")
        self.register_buffer("feature_keep", torch.from_numpy(template_eye_keep(input_size, margin, h))[None, None])
        self.att_conv = nn.Conv2d(c, c, 1)
        with torch.no_grad():
            self.att_conv.weight.copy_(torch.eye(c).view(c, c, 1, 1))
            self.att_conv.bias.zero_()

    def masked_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G1, G3): the feature map at the masked stage, before and after the eye mask."""
        x = x * self.pixel_keep - (1.0 - self.pixel_keep)  # the template eye region -> black (-1 in this scale)
        g1 = self._stages()[:self.stage](self._pre(x))
        return g1, g1 * self.feature_keep

    def from_masked(self, g3: torch.Tensor) -> torch.Tensor:
        """Logits from G3: the 1x1 convolution, the remaining stages, pooling and the age head."""
        return self._pool_head(self._stages()[self.stage:](self.att_conv(g3)))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features before the age head (the eyes masked, as in :meth:`forward`)."""
        return self._pooled(self._stages()[self.stage:](self.att_conv(self.masked_features(x)[1])))

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_masked(self.masked_features(x)[1])


class EyeAttentionResNet10(_EyeMask):
    """ResNet-10 (:class:`agescan.train.resnet10.ResNet10`'s layers and names, so the shipped ensemble's members
    load into it with ``--init NAME#K``) with the eyes masked at the input and at a feature stage (G3 = G1 * G2).

    Extra layers: ``att_conv`` (1x1, identity at start); buffers ``pixel_keep`` (1 x 1 x S x S) and
    ``feature_keep`` (1 x 1 x H x W), constants of the exported graph."""

    def __init__(self, n_bins: int = 101, input_size: int = 64, margin: float = 0.0, dropout: float = 0.2):
        super().__init__()
        from agescan.train.resnet10 import ResNet10

        base = ResNet10(n_bins, dropout)
        self.stem, self.stem_aff, self.blocks, self.drop, self.fc = (base.stem, base.stem_aff, base.blocks,
                                                                     base.drop, base.fc)
        self.register_buffer("means", base.means.clone())
        self._setup_mask(input_size, margin)

    def _stages(self) -> nn.Sequential:
        return self.blocks

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        from agescan.train.resnet10 import stem_forward

        return stem_forward(self, x)

    def _pool_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x.mean((2, 3))))


class EyeAttentionDexNet(_EyeMask):
    """A DexNet (:class:`agescan.train.nets.DexNet`'s layers and names: ``features``, ``head``, so a shipped
    ``dexnet-*`` model loads into it with ``--init NAME``) with the eyes masked at the input and at the deepest
    feature stage with at least :data:`MIN_MAP` rows (8x8 at 64 px), then the 1x1 convolution and the rest."""

    def __init__(self, n_bins: int = 101, widths: tuple[int, ...] | None = None, input_size: int = 64,
                 margin: float = 0.0, dropout: float = 0.2):
        super().__init__()
        from agescan.train.nets import DexNet

        base = DexNet(n_bins, dropout=dropout) if widths is None else DexNet(n_bins, widths, dropout)
        self.features, self.head = base.features, base.head
        self._setup_mask(input_size, margin)

    def _stages(self) -> nn.Sequential:
        return self.features

    def _pool_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[:2](x)


def build_attention(arch: str, attention: str, n_bins: int, input_size: int, margin: float) -> nn.Module:
    """The network ``arch`` with ``attention`` ('eyes'); a ValueError that says what exists otherwise."""
    if attention not in ATTENTIONS:
        raise ValueError(f"--attention {attention!r}: choose one of {', '.join(ATTENTIONS)} (or leave it empty).")
    if arch == "resnet10":
        return EyeAttentionResNet10(n_bins, input_size, margin)
    from agescan.train.nets import DEXNET_WIDTHS

    if arch in DEXNET_WIDTHS:
        return EyeAttentionDexNet(n_bins, DEXNET_WIDTHS[arch], input_size, margin)
    raise ValueError(f"--attention eyes is built for --arch resnet10 and {', '.join(DEXNET_WIDTHS)}, not {arch!r} "
                     "(SSR-Net's two streams have no single feature map to mask).")
