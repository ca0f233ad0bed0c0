"""Export a trained torch model to ONNX with its model card embedded, and check parity.

Needs the ``train`` extra (torch, onnx). The inference path never imports this package.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from agescan.models.card import CARD_KEY, ModelCard


def embed_card(onnx_bytes: bytes, card: ModelCard) -> bytes:
    """Return the ONNX model with ``card`` stored in its metadata (replacing any earlier card)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    props = [p for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card.to_json()
    model.producer_name = "agescan"
    return model.SerializeToString()


def export_onnx(module, card: ModelCard, path: str | Path, opset: int = 17) -> tuple[Path, str]:
    """Export ``module`` (N x 3 x S x S normalised input -> N x bins probabilities) with ``card``.

    Returns the path and the sha256 of the written file.
    """
    import torch

    module = module.eval()
    size = card.crop.size
    dummy = torch.zeros(1, 3, size, size)
    buf = io.BytesIO()
    torch.onnx.export(module, (dummy,), buf, input_names=[card.input_name], output_names=[card.output_name],
                      dynamic_axes={card.input_name: {0: "N"}, card.output_name: {0: "N"}}, opset_version=opset,
                      dynamo=False)
    data = embed_card(buf.getvalue(), card)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def parity(module, path: str | Path, n: int = 64, seed: int = 0) -> float:
    """Max absolute difference between torch and onnxruntime outputs on random inputs."""
    import onnxruntime as ort
    import torch

    from agescan.models.onnx_model import read_card

    data = Path(path).read_bytes()
    card = read_card(data)
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(n, card.crop.size, card.crop.size, 3), dtype=np.uint8)
    x = card.preprocess(crops)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run([card.output_name], {card.input_name: x})[0]
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())
