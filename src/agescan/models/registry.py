"""The model registry: packaged models by name, or any exported .onnx file with an embedded card."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from agescan._registry import Registry
from agescan.errors import ModelNotFoundError
from agescan.models.card import ModelCard
from agescan.models.onnx_model import OnnxAgeModel

models: Registry[OnnxAgeModel] = Registry("model")

#: The model used when none is named: trained by agescan on UTKFace (non-commercial licence).
DEFAULT_MODEL = "resnet10x2-ocl.utkface"


def register_model(name: str):
    """Decorator: register a factory ``(threads=0) -> OnnxAgeModel`` under ``name``."""
    return models.register(name)


def packaged(name: str, filename: str, sha256: str) -> None:
    """Register a model whose ONNX file ships in ``agescan/models/weights``."""

    @register_model(name)
    def _factory(threads: int = 0) -> OnnxAgeModel:
        path = resources.files("agescan.models") / "weights" / filename
        return OnnxAgeModel(Path(str(path)), sha256=sha256, threads=threads, model_id=name)


def create_model(name: str = DEFAULT_MODEL, *, threads: int = 0) -> OnnxAgeModel:
    """Load a registered model by name, or an exported ``.onnx`` file by path.

    Raises :class:`ModelNotFoundError` for an unknown name or a missing file, :class:`ConfigError` naming the file
    for one that is empty, not ONNX, corrupt, or carries no valid model card, :class:`ModelIntegrityError` for
    packaged weights failing their sha256 check.

    Example:
        >>> model = create_model()            # doctest: +SKIP
        >>> model.card.crop.size              # doctest: +SKIP
        64
    """
    if name in models:
        return models.create(name, threads=threads).load()
    path = Path(name)
    if path.suffix.lower() == ".onnx":
        if path.is_file():
            return OnnxAgeModel(path, threads=threads).load()
        said = "is a folder, not a model file" if path.is_dir() else "no such model file"
        raise ModelNotFoundError(f"{name}: {said}. Give an exported .onnx age model or a registered name "
                                 f"({', '.join(list_models())}; `agescan models` shows their cards).")
    models.factory(name)  # raises ModelNotFoundError listing the known names
    raise ModelNotFoundError(name)  # pragma: no cover


def list_models() -> list[str]:
    """Names of the registered models."""
    return models.names()


def model_card(name: str) -> ModelCard:
    return create_model(name).card
