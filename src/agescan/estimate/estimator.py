"""AgeEstimator: the one pipeline behind the CLI, the API and the scanners.

image -> detect (boxes + 5 landmarks) -> frame (the model card's crop: the five-point warp, or from the box for a face
turned past ``profile_yaw``, agescan.align.pose) -> age model -> distribution -> point age, interval,
P(age < minor_age), age group.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from agescan import __version__
from agescan._validation import check_number
from agescan.align import PROFILE_YAW, frame_face
from agescan.detect import DEFAULT_DETECTOR, create_detector
from agescan.errors import ConfigError, DecodeError, InputError
from agescan.io import DEFAULT_MAX_PIXELS, SourceItem, iter_sources, load_image
from agescan.io.archives import DEFAULT_ARCHIVE_DEPTH, read_member
from agescan.io.image import decode_bytes
from agescan.io.phash import pdq
from agescan.io.frames import HEAD_BYTES, FrameError, later_frames, may_have_frames
from agescan.io.names import os_name, printable, text_name
from agescan.io.video import VideoFrame, is_video, iter_frames
from agescan.models import DEFAULT_MODEL, create_model
from agescan.privacy import anonymise, canonical_op, get_transform
from agescan.triage import DEFAULT_CHALLENGE_AGE, DEFAULT_FLAG_THRESHOLD, check_triage, is_flagged
from agescan.types import AgeDistribution, AlignedFace, Detection, FaceResult, ImageResult, Provenance, age_group

_OWNER = "AgeEstimator"


def _item_key(item: Any) -> tuple[str, int]:
    """(source id, frame index) of an input as results and the store name it: a listed item's own id, a path's id
    (:func:`agescan.io.names.text_name`)."""
    if isinstance(item, (VideoFrame, FrameError)):
        return item.source, item.frame_index  # made from a listed item: its id
    if isinstance(item, SourceItem):
        return item.path, -1
    return (text_name(os.fspath(item)), -1) if isinstance(item, (str, os.PathLike)) else ("", -1)


@dataclass
class _Pending:
    """An image whose faces are detected and cropped, waiting for the batched model call."""

    provenance: Provenance
    width: int
    height: int
    framed: tuple[AlignedFace, ...]  # detection, crop, affine, pose and framing of each face
    crops: np.ndarray  # N x S x S x 3 uint8: the framed crops stacked for the batched model call
    error: str = ""
    error_type: str = ""


class AgeEstimator:
    """Estimate the age of every face in an image.

    Args:
        model: a registered model name (see ``agescan models``) or a path to an exported ``.onnx``.
        detector: a registered detector name (default :data:`agescan.detect.DEFAULT_DETECTOR`) or an exported
            ``.onnx`` detector with its card.
        minor_age: P(age < minor_age) is reported as ``p_minor`` (18 by default).
        interval_level: probability mass of the reported central interval (0.9 by default).
        min_face_size: smallest face side, in pixels, the detector looks for.
        max_pixels: images larger than this are refused with a DecodeError (decompression bombs).
        batch_size: faces per model call when streaming.
        workers: threads decoding and detecting in parallel in :meth:`stream`.
        video_every: seconds of video between sampled frames in :meth:`stream` (each frame is one result);
            0 samples only the first frame and scene changes.
        video_scene: also sample a video frame at each scene change, when the mean absolute difference of
            32x32 grey thumbnails probed five times a second exceeds this share of the pixel range (0 = off).
        threads: onnxruntime threads per session (0 = automatic: the detector's many small calls run
            fastest on one thread, measured 30 vs 24 images/s at 640x480 on 2 cores; the model uses
            onnxruntime's default with one worker, and one thread per session with several workers,
            since parallel sessions that each spin a full thread pool slow each other down).
        flag_threshold, challenge_age: the triage rule (:mod:`agescan.triage`): a face is ``flagged`` for review
            when P(minor) >= flag_threshold or its point age < challenge_age (0 = off), or, for a card with the
            refer interval, when its interval of level 1 - 2 x flag_threshold reaches below the minor age
            (:mod:`agescan.decisions`). Decided here, once per face. ``flag_threshold`` None (the
            default): the model card's, chosen on val (``agescan train calibrate``), or
            :data:`agescan.triage.DEFAULT_FLAG_THRESHOLD` for a card without one.
        calibrated: apply the model card's calibration (:mod:`agescan.decisions`: temperature of P(age < t),
            conformal intervals); False reports the model's own probabilities and nominal central intervals
            (what ``agescan train calibrate`` fits on).
        anonymise: a registered keyless privacy transform (:func:`agescan.privacy.list_privacy_ops`, e.g.
            ``"eye-band"``) applied to every detected face before the model sees it ("" = none): the model estimates
            from the anonymised face where the detector found the clean one (seeded transforms use seed 0).
        transform: a registered privacy transform applied to the whole picture *before* the pipeline, placed where
            the detector finds the clean faces; the pipeline then runs on the transformed picture as it would on a
            platform that only ever receives anonymised pictures (detect again, align, estimate; boxes and the PDQ
            hash are the transformed picture's). "" = none. Seeded transforms use seed 0.
        transform_key: the secret of a keyed ``transform`` (the keyed permutation). None: a fresh random key that is
            never stored or returned (the pipeline measures what a holder of the picture without the key sees).
        condition: the registered privacy transform the pictures given have already been through (a platform
            that only receives, say, eye-mosaicked pictures: ``"eye-mosaic"``); "" = none. The triage threshold,
            the age check's max_error and the refer rule are then the model card's for that transform where the
            card has them (``agescan train calibrate --per-condition``), else its main ones. ``transform`` and
            ``anonymise`` imply their own transform when this is not given.
        profile_yaw: faces whose estimated |yaw| exceeds this many degrees are framed from their box instead of
            warped onto the frontal template (:mod:`agescan.align.pose`; default :data:`agescan.align.PROFILE_YAW`,
            chosen on validation data); 90 always warps (the pipeline before pose-aware framing), 0 always frames
            from the box. Each face result records its ``yaw``, ``roll`` and ``framing``.

    Example:
        >>> from agescan import AgeEstimator
        >>> est = AgeEstimator()                                # doctest: +SKIP
        >>> result = est.predict("photo.jpg")                   # doctest: +SKIP
        >>> [(round(f.age), round(f.p_minor, 2)) for f in result.faces]  # doctest: +SKIP
        [(34, 0.01)]
    """

    def __init__(self, model: str = DEFAULT_MODEL, detector: str = DEFAULT_DETECTOR, *, minor_age: int = 18,
                 interval_level: float = 0.9, min_face_size: int = 24, max_pixels: int = DEFAULT_MAX_PIXELS,
                 batch_size: int = 64, workers: int = 1, threads: int = 0, video_every: float = 1.0,
                 video_scene: float = 0.0, flag_threshold: float | None = None,
                 challenge_age: float = DEFAULT_CHALLENGE_AGE, anonymise: str = "", transform: str = "",
                 transform_key: bytes | None = None, profile_yaw: float = PROFILE_YAW, calibrated: bool = True,
                 condition: str = ""):
        check_number(minor_age, "minor_age", _OWNER, lo=1, hi=100, integer=True)
        check_number(interval_level, "interval_level", _OWNER, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_number(min_face_size, "min_face_size", _OWNER, lo=12, integer=True)
        check_number(max_pixels, "max_pixels", _OWNER, lo=1, integer=True)
        check_number(batch_size, "batch_size", _OWNER, lo=1, integer=True)
        check_number(workers, "workers", _OWNER, lo=1, hi=256, integer=True)
        check_number(threads, "threads", _OWNER, lo=0, integer=True)
        check_number(video_every, "video_every", _OWNER, lo=0.0)
        check_number(video_scene, "video_scene", _OWNER, lo=0.0, hi=1.0)
        check_triage(DEFAULT_FLAG_THRESHOLD if flag_threshold is None else flag_threshold, challenge_age, _OWNER)
        check_number(profile_yaw, "profile_yaw", _OWNER, lo=0.0, hi=90.0)
        if anonymise:
            anonymise = canonical_op(anonymise)  # an unknown name raises ModelNotFoundError listing the registered ops
            if get_transform(anonymise).needs_key:
                raise ConfigError(f"{_OWNER}: anonymise={anonymise!r} needs a secret key and hides the whole picture, so "
                                  "no face would be left to estimate. Use `agescan anonymize --method "
                                  f"{anonymise}` to protect pictures, or a keyless transform here.")
        if transform:
            transform = canonical_op(transform)
            if get_transform(transform).needs_key and transform_key is None:
                transform_key = os.urandom(32)
        if condition:
            condition = canonical_op(condition)
        if video_every == 0 and video_scene == 0:
            raise ConfigError(f"{_OWNER}: video_every and video_scene are both 0, so no video frame would be "
                              "sampled. Set video_every (seconds) and/or video_scene (e.g. 0.15).")
        self.model_name = model
        self.detector_name = detector
        self.minor_age = minor_age
        self.interval_level = float(interval_level)
        self.min_face_size = min_face_size
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.workers = workers
        self.threads = threads
        self.video_every = float(video_every)
        self.video_scene = float(video_scene)
        self._flag_threshold = None if flag_threshold is None else float(flag_threshold)
        self.calibrated = bool(calibrated)
        self.challenge_age = float(challenge_age)
        self.anonymise = anonymise
        self.transform = transform
        self._transform_key = transform_key
        self.profile_yaw = float(profile_yaw)
        self.condition = condition
        self._model = None
        self._detector = None
        self._decider = None

    def get_params(self) -> dict:
        """The constructor's arguments, as given (a transform's secret key excepted): ``AgeEstimator(**est.get_params())`` builds the same pipeline (how
        a distributed scan builds one per worker)."""
        return {"model": self.model_name, "detector": self.detector_name, "minor_age": self.minor_age,
                "interval_level": self.interval_level, "min_face_size": self.min_face_size,
                "max_pixels": self.max_pixels, "batch_size": self.batch_size, "workers": self.workers,
                "threads": self.threads, "video_every": self.video_every, "video_scene": self.video_scene,
                "flag_threshold": self._flag_threshold, "challenge_age": self.challenge_age,
                "anonymise": self.anonymise, "transform": self.transform, "profile_yaw": self.profile_yaw,
                "calibrated": self.calibrated, "condition": self.condition}

    def replace(self, **changes) -> "AgeEstimator":
        """A new estimator with some parameters changed (``get_params`` names them). It shares this one's loaded
        model and detector when the changes leave them alone (another triage rule, anonymisation, minor age...)."""
        params = self.get_params()
        key = {"transform_key": self._transform_key} if "transform" not in changes else {}
        new = AgeEstimator(**{**params, **key, **changes})
        loading = ("model", "detector", "min_face_size", "threads", "workers")
        if self._model is not None and all(new.get_params()[k] == params[k] for k in loading):
            new._model, new._detector = self._model, self._detector
            new._decider = new.card.decisions(new.calibrated, new.input_condition)
        return new

    @property
    def input_condition(self) -> str:
        """The privacy transform the model's faces have been through ("" = none): ``condition``, else ``transform``,
        else ``anonymise``; the card's thresholds for it decide (``condition`` in the constructor)."""
        return self.condition or self.transform or self.anonymise

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> "AgeEstimator":
        """Load the model and detector (done lazily on first use)."""
        if self._model is None:
            model_threads = self.threads or (1 if self.workers > 1 else 0)
            self._model = create_model(self.model_name, threads=model_threads)
            self._detector = create_detector(self.detector_name, min_face_size=self.min_face_size,
                                             threads=self.threads or 1)
            self._decider = self._model.card.decisions(self.calibrated, self.input_condition)
        return self

    @property
    def model(self):
        return self.load()._model

    @property
    def detector(self):
        return self.load()._detector

    @property
    def card(self):
        return self.model.card

    @property
    def decider(self):
        """The :class:`agescan.decisions.Decider` every face of this pipeline is decided by."""
        return self.load()._decider

    @property
    def flag_threshold(self) -> float:
        """The triage threshold in use: the one given, else the model card's, else agescan's default."""
        if self._flag_threshold is not None:
            return self._flag_threshold
        return self.decider.calibration.flag_threshold or DEFAULT_FLAG_THRESHOLD

    @property
    def max_error(self) -> float:
        """The age check's max_error for this model: its card's (chosen on val), else agescan's default."""
        from agescan.agecheck import DEFAULT_MAX_ERROR

        return self.decider.calibration.max_error or DEFAULT_MAX_ERROR

    # -- single image ----------------------------------------------------------------------
    def predict(self, source: Any, *, faces: Sequence[Detection] | None = None) -> ImageResult:
        """Estimate the age of every face in one image.

        Args:
            source: a path, bytes, file object, numpy array (HxWx3 RGB) or PIL image.
            faces: the faces where they were already found (boxes and five landmarks, e.g. by the browser that
                anonymised the image): detection is skipped and exactly these are estimated. None: detect.

        Returns:
            An :class:`ImageResult`; ``faces`` is empty when no face was found.

        Raises:
            DecodeError: the image cannot be read (the message names the file and the reason).
            InputError: a given face lies outside the image.
        """
        if faces is not None:
            faces = tuple(faces)
            if not all(isinstance(f, Detection) for f in faces):
                raise InputError(f"The 'faces' parameter of {_OWNER}.predict must be a sequence of Detection. "
                                 f"Got {[type(f).__name__ for f in faces]}.")
        return self._finish([self._prepare(source, faces)])[0]

    def explain(self, source: Any, method: str = "occlusion", *, faces: Sequence[Detection] | None = None):
        """Saliency maps of every face in one image (:mod:`agescan.explain`), on the crop the model saw and drawn
        back onto the photo through the inverse of the alignment affine.

        Args:
            source: as for :meth:`predict`.
            method: ``"occlusion"`` (no torch needed), ``"sensitivity"`` or ``"gradcam"`` (torch, the ``train``
                extra; ResNet-10 models such as the default).
            faces: as for :meth:`predict`.

        Returns:
            (the image's :class:`ImageResult`, a tuple of :class:`agescan.explain.FaceExplanation`, one per face).

        Example:
            >>> result, maps = AgeEstimator().explain("photo.jpg")          # doctest: +SKIP
            >>> maps[0].image_map.shape == (result.height, result.width)      # doctest: +SKIP
            True
        """
        from agescan import explain as X

        X.check_method(method)
        loaded = load_image(source, max_pixels=self.max_pixels)
        image = loaded.image
        aligned = self.align(image, faces)
        result = self.predict(image, faces=tuple(a.detection for a in aligned))
        out = []
        for a, face in zip(aligned, result.faces):
            if method == "occlusion":
                mean = np.asarray(self.card.mean) / max(self.card.scale, 1e-12)
                fill = tuple(int(round(v)) for v in (mean[::-1] if self.card.colour_order == "BGR" else mean))
                crop_map = X.occlusion_map(lambda c: self.decider.decide(
                    self.model.predict_probs(c, batch_size=max(self.batch_size, 1))).age, a.crop.image, fill=fill)
            else:
                from agescan.explain import torch_maps

                crop_map = getattr(torch_maps, method)(self.model, a.crop.image)
            out.append(X.FaceExplanation(face, a, method, crop_map, X.to_image(crop_map, a.crop.affine, image.shape)))
        result = dataclasses.replace(result, provenance=dataclasses.replace(
            result.provenance, source=loaded.source, sha256=loaded.sha256))
        return result, tuple(out)

    def detect(self, image: np.ndarray) -> tuple[Detection, ...]:
        """The pipeline's detection stage on one decoded HxWx3 uint8 RGB image: the faces it would estimate (boxes,
        five landmarks, scores; empty when none). How ``agescan anonymize`` places its transforms."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"The 'image' parameter of {_OWNER}.detect must be an HxWx3 uint8 RGB array. "
                             f"Got {getattr(image, 'shape', type(image).__name__)}.")
        return tuple(self.detector.detect(image))

    def predict_crops(self, crops: np.ndarray) -> list[AgeDistribution]:
        """The model's own age distributions (before calibration) for already aligned crops (N x S x S x 3 uint8,
        S = card crop size)."""
        card = self.card
        probs = self.model.predict_probs(crops, batch_size=max(self.batch_size, 1))
        return [AgeDistribution.from_array(p, card.min_age) for p in probs]

    # -- many images -----------------------------------------------------------------------
    def stream(self, sources: Any, *, recursive: bool = True, archive_depth: int = DEFAULT_ARCHIVE_DEPTH,
               skip: Callable[[str, int], bool] | None = None) -> Iterator[ImageResult]:
        """Yield one :class:`ImageResult` per input, in input order, lazily.

        ``sources`` may be a folder or file path, or an iterable of paths, bytes, arrays or PIL
        images. Faces from several images are batched into one model call. An input that cannot be
        read yields a result with ``error`` set instead of raising, so one corrupt file never stops
        a long run. A video yields one result per sampled frame (``video_every`` seconds apart) with
        ``provenance.frame_index`` and ``provenance.timestamp`` set; a picture with several frames (animated GIF,
        PNG or WebP, multi-page TIFF) yields its first frame as the picture (frame index -1) and then every later
        frame that differs from the one before it (frame index 1, 2, ...; :mod:`agescan.io.frames`); zip/tar
        members are read in place (archives inside archives to ``archive_depth`` levels).
        ``skip(source_id, frame_index)`` returning True drops an item (or a video frame) before it is
        decoded: how a resumed scan passes over what it already stored (frame_index is -1 for stills).
        """
        self.load()
        items = self._expand(sources, recursive, archive_depth)
        if skip is not None:
            items = (i for i in items if not skip(*_item_key(i)))
        if self.workers == 1:
            prepared: Iterable[_Pending] = (self._prepare_safe(s) for s in items)
        else:
            prepared = self._parallel(items)
        batch: list[_Pending] = []
        faces = 0
        for p in prepared:
            batch.append(p)
            faces += len(p.framed)
            if faces >= self.batch_size or len(batch) >= 4 * self.batch_size:
                yield from self._finish(batch)
                batch, faces = [], 0
        if batch:
            yield from self._finish(batch)

    def _parallel(self, items: Iterable[Any]) -> Iterator[_Pending]:
        """Decode + detect with a bounded look-ahead, preserving order (memory stays flat)."""
        with ThreadPoolExecutor(max_workers=self.workers) as ex:
            window: deque = deque()
            for s in items:
                window.append(ex.submit(self._prepare_safe, s))
                if len(window) >= 2 * self.workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    def _expand(self, sources: Any, recursive: bool, archive_depth: int) -> Iterator[Any]:
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        elif isinstance(sources, (bytes, bytearray, np.ndarray)) or hasattr(sources, "getdata"):
            sources = [sources]
        if isinstance(sources, (list, tuple)):
            # paths given together are listed together, as a scan lists them: a file or folder named twice, or
            # inside another one named, is listed once
            grouped: list[Any] = []
            for paths, run in itertools.groupby(sources, key=lambda s: isinstance(s, (str, os.PathLike))):
                if paths:
                    grouped.append(list(run))
                else:
                    grouped.extend(run)
            sources = grouped
        # paths separated by other inputs are listed apart: what one listing gave is not given again by another
        # (a list only: an iterable, such as a scan's listing, is consumed once, as it comes)
        listed: set[str] | None = (set() if isinstance(sources, list) and sum(isinstance(g, list) for g in sources) > 1
                                   else None)
        for s in sources:
            if isinstance(s, (str, os.PathLike, list)):  # files, folders, archives: listed as a scan lists them
                items: Iterable[Any] = iter_sources(s, recursive=recursive, archive_depth=archive_depth)
            else:
                items = (s,)
            for item in items:
                if listed is not None and isinstance(item, SourceItem):
                    if item.path in listed:
                        continue
                    listed.add(item.path)
                path = getattr(item, "path", item)
                if (isinstance(path, (str, os.PathLike)) and is_video(os.fspath(path))
                        and not getattr(item, "error", "") and not getattr(item, "member", "")):
                    yield from self._frames(os.fspath(path))
                else:
                    yield item
                    if isinstance(item, SourceItem) and not item.error:
                        yield from self._later_frames(item)

    def _later_frames(self, item: SourceItem) -> Iterator[Any]:
        """Frames 1, 2, ... of a picture with several (an animated GIF, a multi-page TIFF: agescan.io.frames); its
        first frame is the item itself. Nothing for a picture with one frame or one that cannot be read (its own
        item records why)."""
        try:
            if item.member:
                if not may_have_frames(read_member(item.archive, item.member, limit=HEAD_BYTES)):
                    return
                data = read_member(item.archive, item.member)
            else:
                path = os_name(item.path)
                if not os.path.isfile(path):  # a named pipe or a device read here would lose its data
                    return
                with open(path, "rb") as fh:
                    if not may_have_frames(fh.read(HEAD_BYTES)):
                        return
                    fh.seek(0)
                    data = fh.read()
        except (OSError, DecodeError):
            return
        yield from later_frames(data, item.path, hashlib.sha256(data).hexdigest(), self.max_pixels)

    def _frames(self, path: str) -> Iterator[Any]:
        """A video's sampled frames; a video that cannot be read becomes one error item."""
        try:
            yield from iter_frames(os_name(path), self.video_every, self.max_pixels, self.video_scene, label=path)
        except DecodeError as exc:
            yield SourceItem(path, printable(str(exc).removeprefix(f"{os_name(path)}: ")))

    # -- stages ----------------------------------------------------------------------------
    def _provenance(self, source: str, sha256: str, frame_index: int = -1, timestamp: float = -1.0) -> Provenance:
        return Provenance(source=source, sha256=sha256, frame_index=frame_index, timestamp=timestamp,
                          agescan_version=__version__, model_id=self.model.id, model_sha256=self.model.sha256,
                          detector_id=self.detector_name, flag_threshold=self.flag_threshold,
                          challenge_age=self.challenge_age)

    def _prepare(self, source: Any, faces: tuple[Detection, ...] | None = None) -> _Pending:
        if isinstance(source, FrameError):
            raise DecodeError(f"{source.source}: {source.error}")
        if isinstance(source, VideoFrame):
            return self._analyse(source.image, self._provenance(source.source, source.sha256, source.frame_index,
                                                                source.timestamp))
        if isinstance(source, SourceItem):
            if source.error:  # found but unusable (missing, permission denied, broken archive or video, ...)
                raise DecodeError(f"{source.path}: {source.error}")
            if source.member:  # read in place from a zip/tar archive
                data = read_member(source.archive, source.member)
                loaded = decode_bytes(data, source.path, max_pixels=self.max_pixels)
            else:  # opened by its file system name, recorded by its id
                loaded = dataclasses.replace(load_image(os_name(source.path), max_pixels=self.max_pixels),
                                             source=source.path)
        else:
            loaded = load_image(source, max_pixels=self.max_pixels)
            if isinstance(source, (str, os.PathLike)):  # a path given directly: recorded by its id
                loaded = dataclasses.replace(loaded, source=text_name(loaded.source))
        return self._analyse(loaded.image, self._provenance(loaded.source, loaded.sha256), faces)

    def _analyse(self, image: np.ndarray, provenance: Provenance,
                 faces: tuple[Detection, ...] | None = None) -> _Pending:
        if self.transform:  # what a platform receiving only transformed pictures would be given
            placed = faces if faces is not None else self.detector.detect(image)
            image = get_transform(self.transform).apply(image, placed, key=self._transform_key)
            faces = None
        h = pdq(image)
        provenance = dataclasses.replace(provenance, pdq=h.hash, pdq_mirror=h.mirror, pdq_quality=h.quality)
        h, w = image.shape[:2]
        if faces is None:
            dets = self.detector.detect(image)
        else:
            for f in faces:
                if f.box.x2 > w or f.box.y2 > h or f.box.x1 < 0 or f.box.y1 < 0:
                    raise InputError(f"The 'faces' parameter of {_OWNER}.predict must lie inside the {w}x{h} image. "
                                     f"Got a box {f.box.as_tuple()}.")
            dets = faces
        aligned = self.align(image, dets)
        size = self.card.crop.size
        crops = (np.stack([a.crop.image for a in aligned]) if aligned
                 else np.zeros((0, size, size, 3), dtype=np.uint8))
        return _Pending(provenance, w, h, aligned, crops)

    def align(self, image: np.ndarray, faces: Sequence[Detection] | None = None) -> tuple[AlignedFace, ...]:
        """The pipeline's alignment stage, public: each face of ``image`` (HxWx3 uint8 RGB; detected when ``faces`` is
        None) anonymised as this estimator's ``anonymise`` says, then cropped as the model card declares. Each
        :class:`~agescan.types.AlignedFace` keeps its detection and the original -> crop affine, so maps computed
        on the crop can be drawn back on the photo. The caller's image is not modified.

        Example:
            >>> aligned = AgeEstimator().align(read_image("photo.jpg"))   # doctest: +SKIP
            >>> aligned[0].crop.image.shape, aligned[0].crop.affine.shape  # doctest: +SKIP
            ((64, 64, 3), (2, 3))
        """
        dets = self.detector.detect(image) if faces is None else tuple(faces)
        if self.anonymise and dets:
            image = anonymise(image, dets, self.anonymise)
        recipe = self.card.crop
        framed = tuple(frame_face(image, d.landmarks, d.box, recipe, self.profile_yaw) for d in dets)
        return tuple(AlignedFace(d, f.crop, yaw=f.pose.yaw, roll=f.pose.roll, framing=f.framing)
                     for d, f in zip(dets, framed))

    def _prepare_safe(self, source: Any) -> _Pending:
        # Any failure on one input becomes that input's error record: in a scan of millions of files an
        # unexpected decoder or OpenCV error must cost one item, not the run (its type and text are kept).
        try:
            return self._prepare(source)
        except Exception as exc:  # noqa: BLE001
            if isinstance(source, VideoFrame):
                prov = self._provenance(source.source, source.sha256, source.frame_index, source.timestamp)
            elif isinstance(source, FrameError):
                prov = self._provenance(source.source, "", source.frame_index, source.timestamp)
            else:
                prov = self._provenance(_item_key(source)[0] or "<input>", "")
            return _Pending(prov, 0, 0, (), np.zeros((0, 1, 1, 3), np.uint8), error=printable(str(exc)),
                            error_type=type(exc).__name__)

    def _finish(self, batch: list[_Pending]) -> list[ImageResult]:
        crops = [p.crops for p in batch if p.framed]
        raw = self.model.predict_probs(np.concatenate(crops), batch_size=max(self.batch_size, 1)) if crops else None
        d, flags = self._decide(raw) if raw is not None else (None, [])
        out, k = [], 0
        for p in batch:
            faces = []
            for aligned in p.framed:
                faces.append(self._face(aligned, d, flags, k))
                k += 1
            out.append(ImageResult(provenance=p.provenance, width=p.width, height=p.height, faces=tuple(faces),
                                   error=p.error, error_type=p.error_type))
        return out

    def _decide(self, raw: np.ndarray):
        """The decisions (:mod:`agescan.decisions`) and the triage flag of each face, from the model's own
        probabilities ``raw`` (N x bins)."""
        decider = self.decider
        d = decider.decide(raw, self.minor_age, self.interval_level)
        refer_lo = decider.refer_low(d.probs, d.age, self.flag_threshold)
        flags = [is_flagged(float(p), float(a), self.flag_threshold, self.challenge_age, refer_lo=float(lo),
                            minor_age=self.minor_age) for p, a, lo in zip(d.p_minor, d.age, refer_lo)]
        return d, flags

    def _face(self, aligned: AlignedFace, d, flags: list[bool], i: int) -> FaceResult:
        det = aligned.detection
        age = float(d.age[i])
        return FaceResult(box=det.box, landmarks=det.landmarks, detector_score=det.score, age=age,
                          distribution=AgeDistribution.from_array(d.probs[i], self.card.min_age),
                          interval=(float(d.lo[i]), float(d.hi[i])), interval_level=self.interval_level,
                          p_minor=float(d.p_minor[i]), minor_age=self.minor_age, age_group=age_group(age),
                          model_id=self.model.id, flagged=flags[i], yaw=aligned.yaw, roll=aligned.roll,
                          framing=aligned.framing)
