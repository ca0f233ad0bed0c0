"""What the age model looks at: saliency maps on the aligned face, drawn back onto the original photo.

Methods (:data:`METHODS`):

- ``occlusion`` (works on the ONNX inference install, no torch): a grey square (the card's mean colour, 1/8 of the
  crop's side) slides over the aligned face with a stride of half its side; each pixel's value is the mean absolute
  change of the point age when the squares covering it are hidden. Zeiler and Fergus' occlusion sensitivity.
- ``sensitivity`` (torch, the ``train`` extra): the APPA-REAL paper's map (Agustsson et al., section IV): the
  gradient of the predicted age with respect to the input pixels, mapped to grey (the L2 norm over the colour
  channels), normalised, smoothed with a Gaussian of sigma 2.5 pixels of the crop, in [0, 1].
- ``gradcam`` (torch): Grad-CAM (Selvaraju et al., as König's thesis uses it) on the last convolutional layer: the
  gradients of the softmax output of the most probable age bin, average-pooled per channel, weight the channels'
  activations; their sum, ReLU'd and normalised, upsampled to the crop (coarse: the last block of the default
  model's ResNet-10s is 3 x 3 cells).

Every map is computed on the crop the model sees (:meth:`agescan.AgeEstimator.align`) and warped back onto the photo
through the inverse of the crop's affine; :func:`overlay` draws it as the APPA-REAL paper does (0 blue and
transparent, 1 yellow and solid).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agescan.errors import ConfigError
from agescan.types import AlignedFace, FaceResult

#: Saliency methods; those needing torch are marked.
METHODS = ("occlusion", "sensitivity", "gradcam")
TORCH_METHODS = ("sensitivity", "gradcam")


@dataclass(frozen=True)
class FaceExplanation:
    """One face's saliency map: on the aligned crop (``crop_map``, S x S in [0, 1]) and on the original photo
    (``image_map``, H x W in [0, 1], 0 outside the crop), with the face's result and the method."""

    face: FaceResult
    aligned: AlignedFace
    method: str
    crop_map: np.ndarray
    image_map: np.ndarray


def normalise(m: np.ndarray) -> np.ndarray:
    """A new map scaled to [0, 1] (all zeros when it is flat)."""
    m = np.asarray(m, dtype=np.float64)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def occlusion_map(predict_age, crop: np.ndarray, patch: int = 0, stride: int = 0,
                  fill: tuple[int, int, int] = (128, 128, 128)) -> np.ndarray:
    """Occlusion sensitivity of ``crop`` (S x S x 3 uint8): for each position of a ``patch`` x ``patch`` square of
    ``fill`` (default side S/8, stride half of it), the absolute change of ``predict_age`` (N x S x S x 3 uint8 ->
    N point ages); each pixel gets the mean over the squares covering it, normalised to [0, 1]."""
    s = crop.shape[0]
    patch = patch or max(2, s // 8)
    stride = stride or max(1, patch // 2)
    starts = list(range(0, s - patch + 1, stride))
    if starts[-1] != s - patch:
        starts.append(s - patch)
    variants, where = [], []
    for y in starts:
        for x in starts:
            v = crop.copy()
            v[y:y + patch, x:x + patch] = fill
            variants.append(v)
            where.append((y, x))
    ages = np.asarray(predict_age(np.stack([crop] + variants)), dtype=np.float64)
    base, occluded = ages[0], ages[1:]
    total, count = np.zeros((s, s)), np.zeros((s, s))
    for (y, x), a in zip(where, occluded):
        total[y:y + patch, x:x + patch] += abs(a - base)
        count[y:y + patch, x:x + patch] += 1
    return normalise(total / np.maximum(count, 1))


def to_image(crop_map: np.ndarray, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A crop-space map drawn back onto the original image (H x W, 0 where the crop does not reach) through the
    inverse of ``affine`` (original -> crop)."""
    h, w = shape[:2]
    return cv2.warpAffine(np.asarray(crop_map, dtype=np.float32), np.asarray(affine, dtype=np.float64), (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0).astype(np.float64)


def overlay(image: np.ndarray, heat: np.ndarray, max_alpha: float = 0.8) -> np.ndarray:
    """A new RGB image: ``heat`` (H x W in [0, 1]) over ``image``, coloured from blue (0) to yellow (1) with opacity
    growing with the value (the APPA-REAL paper's rendering)."""
    v = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)[..., None]
    colour = (1 - v) * np.array([0.0, 0.0, 255.0]) + v * np.array([255.0, 230.0, 0.0])
    alpha = max_alpha * v
    out = image.astype(np.float64) * (1 - alpha) + colour * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw(image: np.ndarray, explanation: FaceExplanation, heat: bool = True) -> np.ndarray:
    """The photo with the face's map (unless ``heat`` is False), its box and its estimate written above it (a new
    image)."""
    out = overlay(image, explanation.image_map) if heat else image.copy()
    f = explanation.face
    x1, y1, x2, y2 = (int(round(v)) for v in f.box.as_tuple())
    thick = max(1, int(round(min(image.shape[:2]) / 300)))
    cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), thick)
    text = (f"{f.age:.1f} y [{f.interval[0]:.0f}-{f.interval[1]:.0f}] P(<{f.minor_age}) {f.p_minor:.2f} "
            f"{explanation.method}")
    scale = max(0.35, min(image.shape[:2]) / 900)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = y1 - 4 if y1 - th - 6 > 0 else min(y2 + th + 4, image.shape[0] - 2)
    cv2.rectangle(out, (x1, ty - th - 3), (x1 + tw + 2, ty + 3), (0, 0, 0), -1)
    cv2.putText(out, text, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"The 'method' parameter of explain must be one of {METHODS}. Got {method!r}.")
    if method in TORCH_METHODS:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ConfigError(f"explain method {method!r} needs PyTorch: pip install 'agescan[train]' (a CPU build "
                              "is enough); 'occlusion' works without it.") from None


def plan_outputs(photos, out: str, methods=("occlusion",), overwrite: bool = False) -> list[tuple[str, dict]]:
    """Where each photo's pictures go: ``(photo, {method: target})`` in input order, each photo once.

    A photo's pictures keep its path relative to the folder all the photos share, under ``out``, named after its
    whole file name: ``OUT/<relative path>.<method>.png`` (``a/same.jpg`` and ``b/same.jpg`` get
    ``OUT/a/same.jpg.occlusion.png`` and ``OUT/b/same.jpg.occlusion.png``; one photo, ``OUT/photo.jpg.occlusion.png``),
    so two photos never share a picture. Raises :class:`~agescan.errors.InputError`, before anything is written,
    when ``out`` is a file, when a picture would replace one of the photos, or when a picture exists and
    ``overwrite`` is False."""
    import os
    from pathlib import Path

    from agescan.errors import InputError

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {out} is a file, not a folder: name a folder for the pictures.")
    unique: dict[Path, str] = {}
    for photo in photos:
        unique.setdefault(Path(str(photo)).resolve(), str(photo))
    if not unique:
        return []
    base = Path(os.path.commonpath([str(p.parent) for p in unique]))
    inputs = set(unique)
    plan, existing = [], []
    for resolved, photo in unique.items():
        rel = resolved.relative_to(base)
        targets = {m: folder / rel.parent / f"{rel.name}.{m}.png" for m in methods}
        for target in targets.values():
            if target.resolve() in inputs:
                raise InputError(f"{photo}: the picture {target} would replace the input "
                                 f"{unique[target.resolve()]}: choose another --out.")
            if target.exists():
                existing.append(str(target))
        plan.append((photo, targets))
    if existing and not overwrite:
        raise InputError(f"{len(existing)} picture(s) exist already (first: {existing[0]}): add --overwrite to replace "
                         "them, or choose another --out.")
    return plan


def iter_explanations(estimator, photos, out: str, methods=("occlusion",), overwrite: bool = False):
    """Explain every face of each photo with each method and write ``<photo's file name>.<method>.png`` (the photo
    with the maps of its faces drawn on it) under the folder ``out`` (:func:`plan_outputs`: relative paths kept, an
    input never replaced, existing pictures only with ``overwrite``). Yields one JSON-ready record per photo and
    method as soon as its picture is written (the file and each face's box, age, interval, P(minor), flag and map
    peak in photo coordinates); a photo that cannot be read yields one record with ``error`` and ``error_type``
    instead, and the others are explained."""
    from PIL import Image

    from agescan.errors import DecodeError
    from agescan.io import read_image
    from agescan.io.names import printable

    for m in methods:
        check_method(m)
    plan = plan_outputs(photos, out, methods, overwrite)
    for photo, targets in plan:
        for method, target in targets.items():
            try:
                result, maps = estimator.explain(photo, method)
                canvas = read_image(photo, max_pixels=estimator.max_pixels)
            except (DecodeError, OSError) as exc:
                yield {"source": photo, "error": printable(str(exc)), "error_type": type(exc).__name__}
                break  # the photo cannot be read: its other methods cannot either
            if estimator.anonymise and maps:  # show the pixels the model saw
                from agescan.privacy import anonymise

                canvas = anonymise(canvas, tuple(m.aligned.detection for m in maps), estimator.anonymise)
            heat = np.max([m.image_map for m in maps], axis=0) if maps else np.zeros(canvas.shape[:2])
            picture = overlay(canvas, heat)
            for m in maps:
                picture = _label(picture, m)
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(target, format="PNG")
            faces = []
            for m in maps:
                y, x = np.unravel_index(int(np.argmax(m.image_map)), m.image_map.shape)
                f = m.face
                faces.append({"box": [round(v, 1) for v in f.box.as_tuple()], "age": round(f.age, 2),
                              "interval": [round(f.interval[0], 2), round(f.interval[1], 2)],
                              "p_minor": round(f.p_minor, 4), "flagged": f.flagged, "framing": f.framing,
                              "peak_xy": [int(x), int(y)]})
            yield {"source": result.source, "method": method, "file": str(target), "faces": faces}


def write_explanations(estimator, photos, out: str, methods=("occlusion",), overwrite: bool = False) -> list[dict]:
    """:func:`iter_explanations` run to the end: every record, in order."""
    return list(iter_explanations(estimator, photos, out, methods, overwrite))


def _label(image: np.ndarray, explanation: FaceExplanation) -> np.ndarray:
    """``image`` (already overlaid) with the face's box and estimate (a new image)."""
    return draw(image, explanation, heat=False)


__all__ = ["METHODS", "TORCH_METHODS", "FaceExplanation", "draw", "iter_explanations", "normalise", "occlusion_map",
           "overlay", "plan_outputs", "to_image", "write_explanations"]
