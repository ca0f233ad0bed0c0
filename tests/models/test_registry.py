"""Registry and model cards: every registered model loads, is hash-checked and declares its preprocessing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from agescan import ConfigError, ModelIntegrityError, ModelNotFoundError, create_model, list_models
from agescan.models import DEFAULT_MODEL, ModelCard, OnnxAgeModel, read_card


def test_default_is_registered():
    assert DEFAULT_MODEL in list_models()


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_conforms(name):
    m = create_model(name)
    card = m.card
    assert card.id == name == m.id
    assert len(m.sha256) == 64
    assert card.licence and card.training_data and card.metrics, "a shipped model must carry licence, data, metrics"
    if "utkface" in name:
        assert "non-commercial" in card.licence.lower()
    s = card.crop.size
    crops = np.random.default_rng(0).integers(0, 255, (5, s, s, 3), dtype=np.uint8)
    p = m.predict_probs(crops)
    assert p.shape == (5, card.n_bins) and np.allclose(p.sum(1), 1) and (p >= 0).all()
    # batch composition does not change a face's answer
    assert np.allclose(m.predict_probs(crops[2:3]), p[2:3], atol=1e-5)
    assert ModelCard.from_json(card.to_json()) == card


def test_unknown_name_lists_known_models():
    with pytest.raises(ModelNotFoundError, match=f"Known models: .*{DEFAULT_MODEL}"):
        create_model("no-such-model")


def test_tampered_weights_are_refused(tmp_path):
    good = create_model()
    path = tmp_path / "copy.onnx"
    shutil.copy(good.path, path)
    assert OnnxAgeModel(path, sha256=good.sha256).load().sha256 == good.sha256
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match"):
        OnnxAgeModel(path, sha256=good.sha256).load()


def test_exported_file_loads_by_path_with_its_card(tmp_path):
    good = create_model()
    path = tmp_path / "mine.onnx"
    shutil.copy(good.path, path)
    m = create_model(str(path))
    assert m.card == good.card
    assert read_card(path.read_bytes()) == good.card


def test_onnx_without_card_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["probs"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "bare.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(ConfigError, match="carries no agescan model card"):
        create_model(str(path))


def test_card_declares_and_applies_preprocessing():
    card = create_model().card
    crops = np.zeros((1, card.crop.size, card.crop.size, 3), np.uint8)
    crops[..., 0] = 255
    x = card.preprocess(crops)
    assert x.shape == (1, 3, card.crop.size, card.crop.size) and x.dtype == np.float32
    red = 0 if card.colour_order == "RGB" else 2
    assert np.allclose(x[0, red], (255 * card.scale - card.mean[red]) / card.std[red], atol=1e-5)
    bgr = ModelCard.from_dict({**card.to_dict(), "colour_order": "BGR"})
    assert np.allclose(bgr.preprocess(crops)[0, 2], x[0, 0], atol=1e-6)
    with pytest.raises(ConfigError, match="unknown fields"):
        ModelCard.from_dict({**card.to_dict(), "surprise": 1})
