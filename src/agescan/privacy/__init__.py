"""Privacy transforms: one registry of pure functions that return new images and never modify their input.

Each transform hides part of a picture before anything else sees it. Training (``--occlusion``), evaluation
(``--condition``), ``agescan anonymize``, ``agescan estimate/scan --transform``, the service's ``anonymise`` option
and the tests all enumerate :data:`privacy_ops`; adding a transform is one module and one registration here.

==================  =====================================================================================
name                what it does
==================  =====================================================================================
eye-band            black bar over the eyes: 25% of the face box's height, 95% of its width (Chaves et al.)
eye-band-mosaic     the eye band's rectangle pixelated with blocks of their mean colour (the web page's)
eye-mask            landmark eye region + 10% (brows, nasal bridge) filled black (Wang et al.)
eye-mosaic          the same region in 10x10 cells (at a 224-px face), each one pixel drawn from it (Wang et al.)
face-blur           Gaussian blur over the face box, 25x25 at a 224-px face, scaled with the face (Wang et al.)
face-only           keep the face box (+20% each side), blank the rest of the picture
keyed-permutation   the whole picture's pixels shuffled by a secret key, reversible with it (Wang et al.)
==================  =====================================================================================

Example:
    >>> from agescan.privacy import anonymise, list_privacy_ops
    >>> list_privacy_ops()
    ['eye-band', 'eye-band-mosaic', 'eye-mask', 'eye-mosaic', 'face-blur', 'face-only', 'keyed-permutation']
    >>> hidden = anonymise(image, detections, "eye-mosaic", seed=1)   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from agescan._registry import Registry
from agescan.errors import ConfigError
from agescan.privacy.blur import blur_kernel, face_blur
from agescan.privacy.eyeband import eye_band, eye_band_polygon
from agescan.privacy.eyemask import eye_mask
from agescan.privacy.faceonly import face_only, face_only_many
from agescan.privacy.mosaic import eye_band_mosaic, eye_mosaic, mosaic_cell
from agescan.privacy.permutation import permute_pixels, pixel_permutation, unpermute_pixels
from agescan.privacy.regions import REFERENCE_FACE, box_pixels, eye_region_polygon, polygon_mask
from agescan.types import BBox, Landmarks5

#: A transform of one face: (image, landmarks, box) -> a new image.
PrivacyOp = Callable[[np.ndarray, Landmarks5, BBox], np.ndarray]


@dataclass(frozen=True)
class PrivacyTransform:
    """A registered transform.

    Attributes:
        name: the registry name.
        summary: one line for ``--help`` and docs.
        face_op: the per-face pure function ``(image, landmarks, box, *, seed, key) -> new image``.
        scope: ``face`` (applied to each face in turn), ``faces`` (one result from all faces together:
            ``image_op(image, faces)``), or ``image`` (the whole picture, faces ignored: ``image_op(image, key)``).
        region: what it covers: ``eyes``, ``face`` or ``image`` (where conformance tests look for changes).
        seeded: its output depends on ``seed``.
        needs_key: it needs a secret ``key``.
        inverse: ``(image, key) -> image`` undoing it, for reversible transforms (else None).
    """

    name: str
    summary: str
    face_op: Callable[..., np.ndarray] | None = None
    scope: str = "face"
    region: str = "eyes"
    seeded: bool = False
    needs_key: bool = False
    image_op: Callable[..., np.ndarray] | None = None
    inverse: Callable[[np.ndarray, bytes], np.ndarray] | None = None
    area: Callable[[tuple, Landmarks5, BBox], np.ndarray] | None = None

    def footprint(self, shape: tuple, faces: Iterable) -> np.ndarray:
        """A new HxW bool mask of the pixels this transform may change for these faces (nothing else changes)."""
        faces = list(faces)
        if self.scope == "image":
            return np.ones(shape[:2], bool)
        if self.scope == "faces":  # face-only: everything but the kept face regions
            kept = face_only_many(np.ones(shape[:2] + (1,), np.uint8), [f.box for f in faces], color=(0,))
            return kept[..., 0] == 0
        mask = np.zeros(shape[:2], bool)
        for f in faces:
            mask |= self.area(shape, f.landmarks, f.box)
        return mask

    @property
    def reversible(self) -> bool:
        return self.inverse is not None

    def __call__(self, image: np.ndarray, landmarks: Landmarks5, box: BBox, *, seed=0,
                 key: bytes | None = None) -> np.ndarray:
        """Apply to one face (for ``image``-scope transforms, to the whole picture)."""
        return self.apply(image, [_Face(box, landmarks)], seed=seed, key=key)

    def apply(self, image: np.ndarray, faces: Iterable, *, seed: int = 0, key: bytes | None = None) -> np.ndarray:
        """A new image with this transform applied to every face (anything with ``box`` and ``landmarks``).

        ``seed`` makes seeded transforms reproducible (face ``i`` draws from the seed sequence ``(seed, i)``);
        ``key`` is the secret of keyed ones.
        """
        if self.needs_key and key is None:
            raise ConfigError(f"The {self.name!r} transform needs a secret key: pass key=... (bytes), or "
                              "--key-file FILE on the command line (`agescan anonymize --new-key FILE` makes one).")
        if self.scope == "image":
            return self.image_op(image, key)
        faces = list(faces)
        if self.scope == "faces":
            return self.image_op(image, faces)
        out = image
        for i, f in enumerate(faces):
            kwargs = {"seed": np.random.SeedSequence([int(seed), i])} if self.seeded else {}
            out = self.face_op(out, f.landmarks, f.box, **kwargs)
        return out.copy() if out is image else out

    def invert(self, image: np.ndarray, *, key: bytes) -> np.ndarray:
        """A new image with this transform undone (reversible transforms only)."""
        if self.inverse is None:
            raise ConfigError(f"The {self.name!r} transform cannot be undone: it removes information. Reversible "
                              f"transforms: {', '.join(n for n in list_privacy_ops() if get_transform(n).reversible)}.")
        return self.inverse(image, key)


@dataclass(frozen=True)
class _Face:
    box: BBox
    landmarks: Landmarks5


privacy_ops: Registry[PrivacyTransform] = Registry("privacy op")


def _band_area(shape: tuple, landmarks: Landmarks5, box: BBox) -> np.ndarray:
    return polygon_mask(shape, eye_band_polygon(landmarks, box))


def _eye_area(shape: tuple, landmarks: Landmarks5, box: BBox) -> np.ndarray:
    return polygon_mask(shape, eye_region_polygon(landmarks))


def _box_area(shape: tuple, landmarks: Landmarks5, box: BBox) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    x0, y0, x1, y1 = box_pixels(box, shape)
    mask[y0:y1, x0:x1] = True
    return mask

#: Older spellings still accepted wherever a transform is named (stored evaluation reports, model cards and run
#: configurations use them): name -> registry name.
ALIASES = {"eyeband": "eye-band"}


@privacy_ops.register("eye-band")
def _eye_band_op() -> PrivacyTransform:
    return PrivacyTransform("eye-band", "a black bar over the eyes: 25% of the face box's height, 95% of its width, "
                            "along the eye line (Chaves et al.)", eye_band, area=_band_area)


@privacy_ops.register("eye-band-mosaic")
def _eye_band_mosaic_op() -> PrivacyTransform:
    return PrivacyTransform("eye-band-mosaic", "the eye band's rectangle pixelated, blocks of a quarter of its height "
                            "in their mean colour (the web page's mosaic; agescan 0.1's eye-mosaic)", eye_band_mosaic,
                            area=_band_area)


@privacy_ops.register("eye-mask")
def _eye_mask_op() -> PrivacyTransform:
    return PrivacyTransform("eye-mask", "the landmark eye region expanded by 10% (brows, nasal bridge) filled black "
                            "(Wang et al.)", eye_mask, area=_eye_area)


@privacy_ops.register("eye-mosaic")
def _eye_mosaic_op() -> PrivacyTransform:
    return PrivacyTransform("eye-mosaic", "the landmark eye region (+10%) in 10x10-pixel cells at a 224-pixel face "
                            "(scaled with the face), each one of its pixels drawn at random, seeded (Wang et al.)",
                            eye_mosaic, seeded=True, area=_eye_area)


@privacy_ops.register("face-blur")
def _face_blur_op() -> PrivacyTransform:
    return PrivacyTransform("face-blur", "Gaussian blur over the face box, 25x25 at a 224-pixel face, scaled with "
                            "the face (Wang et al.)", face_blur, region="face", area=_box_area)


@privacy_ops.register("face-only")
def _face_only_op() -> PrivacyTransform:
    return PrivacyTransform("face-only", "keep only the face boxes (+20% on every side), everything else black",
                            face_only, scope="faces", region="image",
                            image_op=lambda image, faces: face_only_many(image, [f.box for f in faces]))


@privacy_ops.register("keyed-permutation")
def _keyed_permutation_op() -> PrivacyTransform:
    return PrivacyTransform("keyed-permutation", "every pixel of the picture moved by a permutation derived from a "
                            "secret key (HMAC-SHA256 + SHAKE-256); reversible with the key; keeps the colour "
                            "histogram", None, scope="image", region="image", needs_key=True,
                            image_op=permute_pixels, inverse=unpermute_pixels)


def list_privacy_ops(*, keyless: bool = False) -> list[str]:
    """The registered transforms' names (``keyless``: only those that need no secret key)."""
    names = privacy_ops.names()
    return [n for n in names if not get_transform(n).needs_key] if keyless else names


def canonical_op(name: str) -> str:
    """The registry name of ``name`` (accepting :data:`ALIASES`); an unknown name raises ModelNotFoundError listing
    the registered transforms."""
    name = ALIASES.get(name, name)
    privacy_ops.factory(name)
    return name


def get_transform(name: str) -> PrivacyTransform:
    """The registered transform ``name`` (or an alias of it)."""
    return privacy_ops.create(canonical_op(name))


def anonymise(image: np.ndarray, faces: Iterable, op: str, *, seed: int = 0, key: bytes | None = None) -> np.ndarray:
    """A copy of ``image`` with the registered transform ``op`` applied to every face (anything with ``box`` and
    ``landmarks``: detections or face results). ``seed`` and ``key`` as :meth:`PrivacyTransform.apply`."""
    return get_transform(op).apply(image, faces, seed=seed, key=key)


__all__ = ["ALIASES", "PrivacyOp", "PrivacyTransform", "REFERENCE_FACE", "anonymise", "blur_kernel", "canonical_op",
           "eye_band", "eye_band_mosaic", "eye_band_polygon", "eye_mask", "eye_mosaic", "eye_region_polygon",
           "face_blur", "face_only", "face_only_many", "get_transform", "list_privacy_ops", "mosaic_cell",
           "permute_pixels", "pixel_permutation", "privacy_ops", "unpermute_pixels"]
