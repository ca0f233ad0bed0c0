"""Export a trained torch model to ONNX with its model card embedded, and check parity.

Needs the ``train`` extra (torch, onnx). The inference path never imports this package.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np

from agescan.models.card import CARD_KEY, ModelCard


def embed_card(onnx_bytes: bytes, card, key: str = CARD_KEY) -> bytes:
    """Return the ONNX model with ``card`` (a model or detector card) stored in its metadata under ``key``
    (replacing any earlier card)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    props = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = key, card.to_json()
    model.producer_name = "agescan"
    return model.SerializeToString()


def half_storage(onnx_bytes: bytes, min_size: int = 1024) -> bytes:
    """Store every float32 weight of at least ``min_size`` values as float16, cast back to float32 when the
    session is created (onnxruntime folds the casts), so the file is about half the size and inference still
    computes in float32. Lossless for weights already rounded to float16 (:func:`round_to_half`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name + "__f16"))
        casts.append(helper.make_node("Cast", [name + "__f16"], [name], to=TensorProto.FLOAT, name=name + "__cast"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def round_to_half(module) -> int:
    """Round ``module``'s parameters of at least 1024 values to float16 precision in place (they stay float32),
    so torch and a :func:`half_storage` export compute the same function. Returns how many tensors changed."""
    import torch

    n = 0
    with torch.no_grad():
        for p in module.parameters():
            if p.dtype == torch.float32 and p.numel() >= 1024:
                p.copy_(p.half().float())
                n += 1
    return n


def export_onnx(module, card: ModelCard, path: str | Path, opset: int = 17,
                half: bool = False) -> tuple[Path, str]:
    """Export ``module`` (N x 3 x S x S normalised input -> N x bins probabilities) with ``card``.

    With ``half`` the large weights are stored as float16 (:func:`half_storage`; round the module first with
    :func:`round_to_half` for exact parity). Returns the path and the sha256 of the written file.
    """
    import torch

    module = module.eval()
    size = card.crop.size
    dummy = torch.zeros(1, 3, size, size)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # shape tests in a network are constants for the card's fixed input size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, (dummy,), buf, input_names=[card.input_name], output_names=[card.output_name],
                          dynamic_axes={card.input_name: {0: "N"}, card.output_name: {0: "N"}}, opset_version=opset,
                          dynamo=False)
    data = embed_card(half_storage(buf.getvalue()) if half else buf.getvalue(), card)
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
