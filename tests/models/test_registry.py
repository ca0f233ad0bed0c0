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


def _with_card(tmp_path, name: str, card_text: str):
    """A copy of a shipped model whose embedded card (ONNX metadata) is replaced by ``card_text``."""
    onnx = pytest.importorskip("onnx")
    from agescan.models.card import CARD_KEY

    m = onnx.load(str(create_model("dexnet-m-ocl.utkface").path))
    for prop in m.metadata_props:
        if prop.key == CARD_KEY:
            prop.value = card_text
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def _broken_models(tmp_path) -> dict:
    """Model files a user may point --model at by mistake, each with the words its error must say."""
    good = create_model("dexnet-m-ocl.utkface")
    data = good.path.read_bytes()
    card = good.card.to_dict()
    files = {"empty.onnx": (b"", "empty file"), "random.onnx": (np.random.default_rng(0).bytes(4000), "not a loadable"),
             "text.onnx": (b"hello\n", "not a loadable"), "truncated.onnx": (data[: len(data) // 3], "not a loadable")}
    out = {}
    for name, (content, said) in files.items():
        (tmp_path / name).write_bytes(content)
        out[tmp_path / name] = said
    import json

    out[_with_card(tmp_path, "badjson.onnx", good.card.to_json()[:-40])] = "card (metadata key 'agescan.card') is not valid"
    out[_with_card(tmp_path, "badcrop.onnx", json.dumps({**card, "crop": {**card["crop"], "size": -64}}))] = "'size'"
    out[_with_card(tmp_path, "list.onnx", "[]")] = "is not valid"
    out[_with_card(tmp_path, "badstd.onnx", json.dumps({**card, "std": [0, 0, 0]}))] = "std > 0"
    return out


def test_a_broken_model_file_is_a_config_error_naming_it(tmp_path):
    """Before: onnxruntime's InvalidProtobuf / InvalidArgument, json's JSONDecodeError and an InputError (exit 2)
    escaped from create_model."""
    for path, said in _broken_models(tmp_path).items():
        with pytest.raises(ConfigError) as err:
            create_model(str(path))
        assert str(path) in str(err.value) and said in str(err.value), (path, str(err.value))
    with pytest.raises(ConfigError, match="empty file"):
        read_card(b"", "x.onnx")
    with pytest.raises(ModelNotFoundError, match="no such model file"):
        create_model(str(tmp_path / "absent.onnx"))
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        create_model(str(tmp_path / "folder.onnx"))


def test_estimate_and_evaluate_refuse_a_broken_model_with_exit_3_and_one_line(tmp_path, astronaut_path):
    import subprocess
    import sys

    faces = tmp_path / "faces" / "30"  # an age-named folder: a labelled set of one
    faces.mkdir(parents=True)
    shutil.copy(astronaut_path, faces / "astronaut.png")
    broken = _broken_models(tmp_path)
    for path in [p for p in broken if p.name in ("random.onnx", "empty.onnx", "badjson.onnx", "badcrop.onnx")]:
        for args in (("estimate", astronaut_path), ("evaluate", path, tmp_path / "faces")):
            cmd = [*args, "--model", path] if args[0] == "estimate" else list(args)
            out = subprocess.run([sys.executable, "-m", "agescan", *map(str, cmd), "--threads", "1"],
                                 capture_output=True, text=True, timeout=300)
            assert out.returncode == 3, (cmd, out.returncode, out.stderr)
            assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
            assert str(path) in out.stderr, out.stderr
