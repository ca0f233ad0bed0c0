"""Augmentations that reproduce what photos in the wild do to faces, for training (``agescan train fit --wild``).

UTKFace's chips are frontal, sharp, well lit and unobstructed; seized material and selfies are not. Each registered
augmentation takes a batch of model crops (N x 3 x H x W floats in [0, 1], after the geometric crop) and returns a
new batch in which a random share of the faces (``p`` each) is degraded one way:

- ``lowres``: shrunk to 12-32 px and scaled back up (small faces in large photos, thumbnails);
- ``defocus``: Gaussian blur, sigma 0.8-2 px;
- ``motion``: a 5-9 px line blur at 0, 45, 90 or 135 degrees (camera shake, moving subjects);
- ``jpeg``: JPEG at quality 15-60 (re-saved, messaged, screenshotted images);
- ``colour-cast``: per-channel gains 0.8-1.2 and gamma 0.7-1.4 (tungsten, fluorescent, night, faded prints);
- ``occlusion``: a flat or noisy patch over the lower face (a hand), the upper face (hair, a cap) or one side
  (an object, another head), 20-45% of the crop's height.

The geometric part of the wild (turned heads framed from their box, off-centre and mis-scaled crops) is in the
training grid (:func:`agescan.train.loop.augment_grid`: ``yaw`` squeezes one side and shifts the face, as a turned
head's crop does) and in the box-framed crops of ``agescan train prepare`` (``--box-p``). Pure functions: the input
batch is never modified; randomness comes only from the ``torch.Generator`` given.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from agescan._registry import Registry

#: name -> fn(batch, generator, p) -> new batch
augmentations: Registry[Callable] = Registry("wild augmentation")
#: The geometric augmentation applied in the training grid, named like the others.
GEOMETRIC = ("yaw",)


def _register(name: str):
    def deco(fn):
        augmentations.register(name)(lambda: fn)
        return fn
    return deco


def _pick(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.nonzero(torch.rand(n, generator=gen) < p).flatten()


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


@_register("lowres")
def lowres(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    out = x.clone()
    idx = _pick(len(x), p, gen)
    sizes = torch.tensor([12, 16, 24, 32])[torch.randint(4, (len(idx),), generator=gen)]
    h, w = x.shape[-2:]
    for s in sizes.unique().tolist():
        sel = idx[sizes == s]
        small = F.interpolate(x[sel], size=(s, s), mode="area")
        out[sel] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    k = kernel[None, None].expand(x.shape[1], 1, *kernel.shape).to(x.dtype)
    pad = (kernel.shape[1] // 2, kernel.shape[1] // 2, kernel.shape[0] // 2, kernel.shape[0] // 2)
    return F.conv2d(F.pad(x, pad, mode="replicate"), k, groups=x.shape[1])


@_register("defocus")
def defocus(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    out = x.clone()
    idx = _pick(len(x), p, gen)
    sigmas = torch.tensor([0.8, 1.3, 2.0])[torch.randint(3, (len(idx),), generator=gen)]
    for s in sigmas.unique().tolist():
        sel = idx[sigmas == s]
        r = int(math.ceil(3 * s))
        g = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / s) ** 2)
        g = g / g.sum()
        out[sel] = _depthwise(x[sel], g[:, None] @ g[None, :])
    return out


@_register("motion")
def motion(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    out = x.clone()
    idx = _pick(len(x), p, gen)
    kinds = torch.randint(12, (len(idx),), generator=gen)  # 3 lengths x 4 directions
    for kind in kinds.unique().tolist():
        sel = idx[kinds == kind]
        length, direction = (5, 7, 9)[kind // 4], kind % 4
        k = torch.zeros(length, length)
        c = length // 2
        for t in range(length):
            i, j = [(c, t), (t, t), (t, c), (t, length - 1 - t)][direction]
            k[i, j] = 1.0
        out[sel] = _depthwise(x[sel], k / k.sum())
    return out


@_register("jpeg")
def jpeg(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    import cv2

    out = x.clone()
    idx = _pick(len(x), p, gen)
    quality = torch.randint(15, 61, (len(idx),), generator=gen).tolist()
    for i, q in zip(idx.tolist(), quality):
        img = (x[i].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, q])
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
        out[i] = torch.from_numpy(np.ascontiguousarray(dec)).permute(2, 0, 1).float() / 255
    return out


@_register("colour-cast")
def colour_cast(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    out = x.clone()
    idx = _pick(len(x), p, gen)
    gains = _u(len(idx) * 3, 0.8, 1.2, gen).reshape(-1, 3, 1, 1)
    gamma = _u(len(idx), 0.7, 1.4, gen).reshape(-1, 1, 1, 1)
    out[idx] = (x[idx].clamp(1e-4, 1) ** gamma * gains).clamp(0, 1)
    return out


@_register("occlusion")
def occlusion(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    out = x.clone()
    idx = _pick(len(x), p, gen)
    h, w = x.shape[-2:]
    for i in idx.tolist():
        where = int(torch.randint(3, (1,), generator=gen))
        ph = int(h * float(_u(1, 0.2, 0.45, gen)))
        pw = int(w * float(_u(1, 0.4, 0.9, gen)))
        x0 = int(torch.randint(0, w - pw + 1, (1,), generator=gen))
        if where == 0:  # a hand or an object over the mouth and chin
            y0 = h - ph - int(torch.randint(0, max(1, h // 8), (1,), generator=gen))
        elif where == 1:  # hair or a cap over the forehead and eyes
            y0 = int(torch.randint(0, max(1, h // 8), (1,), generator=gen))
        else:  # something at one side: a narrow, tall patch
            ph, pw = int(h * float(_u(1, 0.5, 0.9, gen))), int(w * float(_u(1, 0.2, 0.35, gen)))
            y0 = int(torch.randint(0, h - ph + 1, (1,), generator=gen))
            x0 = 0 if torch.rand(1, generator=gen) < 0.5 else w - pw
        colour = torch.rand(3, 1, 1, generator=gen)
        if torch.rand(1, generator=gen) < 0.5:  # skin-like: the face's own mean colour, lighter or darker
            colour = (x[i].mean((1, 2), keepdim=True) * float(_u(1, 0.6, 1.3, gen))).clamp(0, 1)
        noise = torch.randn(3, ph, pw, generator=gen) * float(_u(1, 0.0, 0.03, gen))
        out[i, :, y0:y0 + ph, x0:x0 + pw] = (colour + noise).clamp(0, 1)
    return out


def parse_wild(text: str) -> tuple[str, ...]:
    """``"all"`` or comma-separated names (:data:`augmentations` and :data:`GEOMETRIC`) -> the names, checked."""
    if not text:
        return ()
    known = tuple(augmentations.names()) + GEOMETRIC
    names = known if text == "all" else tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--wild: unknown augmentation(s) {unknown}; choose from {list(known)} or 'all'.")
    return names


def apply_wild(x: torch.Tensor, names: tuple[str, ...], p: float, gen: torch.Generator) -> torch.Tensor:
    """The registered (non-geometric) augmentations of ``names`` in a fixed order, each on a share ``p`` of the
    batch; a new tensor."""
    for name in augmentations.names():
        if name in names:
            x = augmentations.create(name)(x, gen, p)
    return x
