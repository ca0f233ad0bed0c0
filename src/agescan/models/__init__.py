"""Age models: registry, model cards and the onnxruntime runner."""

from agescan.models.card import ModelCard
from agescan.models.onnx_model import OnnxAgeModel, read_card
from agescan.models.registry import DEFAULT_MODEL, create_model, list_models, model_card, models, register_model
from agescan.models import zoo as _zoo  # noqa: F401  (registers the packaged models)

__all__ = ["DEFAULT_MODEL", "ModelCard", "OnnxAgeModel", "create_model", "list_models", "model_card", "models",
           "read_card", "register_model"]
