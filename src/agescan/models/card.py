"""ModelCard: everything needed to use a set of weights correctly, travelling with the weights.

Preprocessing is derived from the card, never guessed: a wrong mean/std gives plausible but wrong
ages, the worst failure a forensic tool can have. The card is embedded in the exported ONNX file's
metadata (key ``agescan.card``) and read back at load time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from agescan.align import CropRecipe
from agescan.errors import ConfigError

CARD_KEY = "agescan.card"
#: 2: the ``calibration`` slot (:class:`agescan.decisions.Calibration`); cards of version 1 have none and load with
#: the identity calibration (the model's own probabilities, nominal intervals, agescan's default thresholds).
CARD_VERSION = 2


@dataclass(frozen=True)
class ModelCard:
    """Facts about one age model.

    Attributes:
        id: registry name, e.g. ``"dexnet.utkface"``.
        architecture: network family and size, e.g. ``"DexNet-S (depthwise CNN), DEX head"``.
        head: ``"distribution"`` (the network outputs probabilities over ``min_age..max_age``).
        min_age, max_age: the ages of the first and last output bin.
        crop: the face crop the network expects (:class:`~agescan.align.CropRecipe`).
        colour_order: ``"RGB"`` or ``"BGR"`` channel order of the network input.
        scale: multiplier applied to uint8 pixels before mean/std (1/255 or 1).
        mean, std: per-channel normalisation after scaling, in ``colour_order``.
        licence: licence of the weights; training_data: what they were trained on, and its licence.
        metrics: measured numbers (split, condition, metric -> value) from ``agescan evaluate``.
        training: the exact command and settings that produced the weights.
        calibration: the calibration slot (:class:`agescan.decisions.Calibration` as a dict, its own ``version``):
            temperature of P(age < t), Mondrian conformal masses, the triage threshold and the age check's
            max_error, fitted on val by ``agescan train calibrate``; empty when not fitted.
    """

    id: str
    architecture: str
    head: str = "distribution"
    min_age: int = 0
    max_age: int = 100
    crop: CropRecipe = field(default_factory=CropRecipe)
    colour_order: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_name: str = "input"
    output_name: str = "probs"
    licence: str = ""
    training_data: str = ""
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    notes: str = ""
    calibration: dict = field(default_factory=dict)
    card_version: int = CARD_VERSION

    def __post_init__(self) -> None:
        if self.head != "distribution":
            raise ConfigError(f"Model card {self.id!r}: head must be 'distribution'. Got {self.head!r}.")
        if self.colour_order not in ("RGB", "BGR"):
            raise ConfigError(f"Model card {self.id!r}: colour_order must be 'RGB' or 'BGR'. Got {self.colour_order!r}.")
        if not self.max_age > self.min_age >= 0:
            raise ConfigError(f"Model card {self.id!r}: need 0 <= min_age < max_age. Got {self.min_age}, {self.max_age}.")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError(f"Model card {self.id!r}: mean and std need 3 values, std > 0.")
        self.decisions()  # a malformed calibration slot fails at load, not at the first face

    def decisions(self, calibrated: bool = True, condition: str = ""):
        """The :class:`agescan.decisions.Decider` of this card (its calibration unless ``calibrated`` is False), with
        the thresholds fitted for pictures that went through the privacy transform ``condition`` where the card has
        them (:meth:`agescan.decisions.Calibration.for_condition`)."""
        from agescan.decisions import Calibration, Decider

        return Decider(self.min_age, Calibration.from_dict(self.calibration).for_condition(condition),
                       calibrated=calibrated)

    @property
    def n_bins(self) -> int:
        return self.max_age - self.min_age + 1

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """N x H x W x 3 uint8 RGB crops -> N x 3 x H x W float32 network input, as the card says."""
        x = crops.astype(np.float32)
        if self.colour_order == "BGR":
            x = x[..., ::-1]
        x = x * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop"] = self.crop.to_dict()
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCard":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"Model card has unknown fields {sorted(unknown)}; upgrade agescan to read it.")
        d = dict(d)
        d["crop"] = CropRecipe.from_dict(d.get("crop", {}))
        d["mean"] = tuple(d.get("mean", (0.5, 0.5, 0.5)))
        d["std"] = tuple(d.get("std", (0.5, 0.5, 0.5)))
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        return cls.from_dict(json.loads(text))
