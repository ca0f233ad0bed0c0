"""Run an exported age model on onnxruntime, with its card read from the ONNX metadata."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from agescan.detect.base import card_from_metadata, onnx_session
from agescan.errors import ConfigError, ModelIntegrityError
from agescan.models.card import CARD_KEY, ModelCard


#: What to do about a model file agescan cannot use (the end of every such message).
_REMEDY = ("Give an age model exported by agescan (`agescan train publish` writes one, its card inside) or a "
           "registered model name (`agescan models` lists them).")


def read_card(onnx_bytes: bytes, source: str = "<model>") -> ModelCard:
    """Read the model card embedded in an ONNX file's metadata, without running the model; ConfigError naming
    ``source`` when the bytes are not a loadable ONNX model or carry no valid card."""
    return _card_from_session(_session(onnx_bytes, source), source)


def _session(data: bytes, source: str, threads: int = 0):
    """An onnxruntime session of ``data``; ConfigError naming ``source`` when it is empty, not ONNX or corrupt."""
    if not data:
        raise ConfigError(f"{source}: empty file (0 bytes), not an ONNX model. {_REMEDY}")
    try:
        return onnx_session(data, threads)
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, InvalidArgument, ...)
        reason = " ".join(str(exc).split()).rstrip(".")
        raise ConfigError(f"{source}: not a loadable ONNX model (onnxruntime: {reason}). {_REMEDY}") from None


def _card_from_session(sess, source: str) -> ModelCard:
    """The card in a session's metadata; ConfigError naming ``source`` when it is absent, is not JSON or holds a
    field of the wrong type or value (a crop size of -64, a std of 0, ...)."""
    return card_from_metadata(sess, CARD_KEY, ModelCard.from_json, source, "model",
                              f"its preprocessing is unknown and is not guessed. {_REMEDY}",
                              "export the model again (`agescan train publish` writes the card)")


class OnnxAgeModel:
    """An age model: aligned uint8 crops in, probabilities over ages out.

    Constructors store; :meth:`load` reads and verifies the weights.

    Args:
        path: the .onnx file (with an embedded card).
        sha256: expected sha256 of the file; a mismatch raises :class:`ModelIntegrityError`.
        threads: onnxruntime intra-op threads (0 = default).
    """

    def __init__(self, path: str | Path, sha256: str = "", threads: int = 0, model_id: str = ""):
        self.path = Path(path)
        self.expected_sha256 = sha256
        self.threads = threads
        self._model_id = model_id
        self._sess = None
        self._card: ModelCard | None = None
        self.sha256 = ""

    def load(self) -> "OnnxAgeModel":
        if self._sess is not None:
            return self
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the model file ({exc.strerror or exc}).") from None
        digest = hashlib.sha256(data).hexdigest()
        if self.expected_sha256 and digest != self.expected_sha256:
            raise ModelIntegrityError(
                f"{self.path}: sha256 {digest} does not match the registered {self.expected_sha256}. "
                f"The file is corrupt or was replaced; reinstall agescan.")
        sess = _session(data, str(self.path), self.threads)
        card = _card_from_session(sess, str(self.path))
        if self._model_id and card.id != self._model_id:
            raise ConfigError(f"{self.path}: card id {card.id!r} differs from the registered id {self._model_id!r}.")
        out_shape = sess.get_outputs()[0].shape
        if isinstance(out_shape[-1], int) and out_shape[-1] != card.n_bins:
            raise ConfigError(f"{self.path}: output has {out_shape[-1]} bins but the card declares {card.n_bins}.")
        self._sess, self._card, self.sha256 = sess, card, digest
        return self

    @property
    def card(self) -> ModelCard:
        self.load()
        return self._card

    @property
    def id(self) -> str:
        return self.card.id

    def predict_probs(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """N x S x S x 3 uint8 RGB crops (S = card crop size) -> N x bins float64 probabilities."""
        self.load()
        card = self._card
        if crops.ndim != 4 or crops.shape[1:] != (card.crop.size, card.crop.size, 3) or crops.dtype != np.uint8:
            raise ConfigError(f"Model {card.id} expects N x {card.crop.size} x {card.crop.size} x 3 uint8 crops. "
                              f"Got {crops.shape} {crops.dtype}.")
        outs = []
        for i in range(0, len(crops), batch_size):
            x = card.preprocess(crops[i:i + batch_size])
            outs.append(self._sess.run([card.output_name], {card.input_name: x})[0])
        if not outs:
            return np.zeros((0, card.n_bins), dtype=np.float64)
        p = np.concatenate(outs).astype(np.float64)
        p = np.clip(p, 0.0, None)
        return p / p.sum(axis=1, keepdims=True)
