"""The YuNet rebuild, its export with a card, target assignment and a few real training steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (torch)")

from agescan.detect.card import DetectorCard  # noqa: E402
from agescan.detect.yunet import YuNetDetector  # noqa: E402
from agescan.errors import ConfigError, ModelIntegrityError  # noqa: E402
from agescan.train.detector import box_iou, decode_boxes, detection_loss, grid_points, simota  # noqa: E402
from agescan.train.yunet import OUTPUT_NAMES, YuNet, export, load_checkpoint, parity  # noqa: E402
from tests.conftest import SHARED  # noqa: E402

AUTHORS = SHARED / "models" / "detectors" / "yunet"


def _card(**kw) -> DetectorCard:
    return DetectorCard.from_dict({"id": "test-yunet", "architecture": "YuNet-s (test)", **kw})


def test_rebuild_reproduces_the_authors_network():
    if not (AUTHORS / "yunet_s.pth").is_file():
        pytest.skip(f"the YuNet authors' weights are not available: {AUTHORS} (set AGESCAN_SHARED)")
    import onnxruntime as ort

    net = load_checkpoint(YuNet(), AUTHORS / "yunet_s.pth").eval()
    sess = ort.InferenceSession(str(AUTHORS / "yunet_s_640_640.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).integers(0, 256, (1, 3, 640, 640)).astype(np.float32)
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    with torch.no_grad():
        ours = dict(zip(OUTPUT_NAMES, net.export_outputs(torch.from_numpy(x))))
    for name in OUTPUT_NAMES:
        assert np.abs(ref[name] - ours[name].numpy()).max() < 1e-4, name


def test_export_parity_card_and_integrity(tmp_path: Path):
    torch.manual_seed(0)
    net = YuNet().eval()
    path, sha = export(net, _card(score_threshold=0.3), tmp_path / "det.onnx")
    assert not net.training  # exporting must not switch the network to batch statistics
    assert parity(net, path, size=(256, 352)) < 1e-4
    det = YuNetDetector(path, sha256=sha, detector_id="test-yunet").load()
    assert det.card.score_threshold == 0.3 and det.sha256 == sha and det.name == "test-yunet"
    with pytest.raises(ModelIntegrityError, match="sha256"):
        YuNetDetector(path, sha256="0" * 64).load()
    with pytest.raises(ConfigError, match="card id"):
        YuNetDetector(path, sha256=sha, detector_id="other-name").load()


def test_an_onnx_without_a_card_is_refused(tmp_path: Path):
    import io

    buf = io.BytesIO()
    torch.onnx.export(YuNet().eval(), (torch.zeros(1, 3, 64, 64),), buf, dynamo=False)
    (tmp_path / "bare.onnx").write_bytes(buf.getvalue())
    with pytest.raises(ConfigError, match="detector card"):
        YuNetDetector(tmp_path / "bare.onnx").load()


def test_card_validation_and_unknown_fields():
    with pytest.raises(ConfigError, match="landmark_order"):
        _card(landmark_order=["left_eye"] * 5)
    with pytest.raises(ConfigError, match="min_face_px"):
        _card(min_face_px=50, max_face_px=40)
    with pytest.raises(ConfigError, match="unknown fields"):
        DetectorCard.from_dict({"id": "x", "architecture": "y", "colour": "BGR"})
    card = _card(strides=[8, 16, 32])
    assert DetectorCard.from_json(card.to_json()) == card


def test_decode_matches_the_inference_detector(tmp_path: Path):
    """Training decodes boxes as the onnxruntime detector does: the same network gives the same boxes."""
    torch.manual_seed(3)
    net = YuNet().eval()
    path, _ = export(net, _card(score_threshold=0.01, nms_iou=0.99, min_face_px=16, max_face_px=10_000), tmp_path / "d.onnx")
    det = YuNetDetector(path, min_face_size=16, threads=1)
    img = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)[None]).astype(np.float32))
    with torch.no_grad():
        levels = net(x)
    box = torch.cat([lv[2] for lv in levels], 1)[0]
    score = torch.sqrt(torch.sigmoid(torch.cat([lv[0] for lv in levels], 1)[0, :, 0])
                       * torch.sigmoid(torch.cat([lv[1] for lv in levels], 1)[0, :, 0]))
    points, strides = grid_points(64, 96)
    decoded = np.clip(decode_boxes(box, points, strides).numpy(), 0, [96, 64, 96, 64])  # the detector clips too
    got = det.detect(img)
    assert got, "a random network still scores above 0.01 somewhere"
    # The top detection is a training-decoded box, at (one of) the highest-scoring point(s): random weights
    # give near-ties, so match by box and compare scores.
    top = np.asarray(got[0].box.as_tuple())
    k = int(np.abs(decoded - top).max(axis=1).argmin())
    assert np.allclose(decoded[k], top, atol=1e-3)
    assert abs(float(score[k]) - got[0].score) < 1e-4 and got[0].score >= float(score.max()) - 1e-4


def test_simota_assigns_points_inside_each_face():
    points, strides = grid_points(128, 128)
    gt = torch.tensor([[20.0, 20.0, 60.0, 64.0], [80.0, 70.0, 120.0, 120.0]])
    # A network that predicts every face perfectly everywhere: each point's box is the nearest face's.
    centres = (gt[:, :2] + gt[:, 2:]) / 2
    nearest = torch.cdist(points, centres).argmin(1)
    boxes = gt[nearest]
    scores = torch.full((len(points),), 0.5)
    fg, matched, ious = simota(scores, boxes, points, strides, gt)
    assert fg.any()
    for g in range(2):
        sel = fg & (matched == g)
        assert sel.sum() >= 1
        px, py = points[sel, 0], points[sel, 1]
        r = 2.5 * strides[sel]
        c = centres[g]
        assert ((px - c[0]).abs() < r).all() and ((py - c[1]).abs() < r).all()
    assert torch.allclose(ious, torch.ones_like(ious))
    assert box_iou(gt, gt).diag().allclose(torch.ones(2))


def test_training_steps_lower_the_loss_on_real_faces(utkface_faces):
    """A few optimiser steps on a batch of real faces pasted into a background lower the detection loss."""
    import cv2

    from agescan import read_image

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images, boxes, kps = [], [], []
    for i, (path, _) in enumerate(utkface_faces[:4]):
        canvas = cv2.GaussianBlur(rng.integers(40, 220, (128, 128, 3), dtype=np.uint8), (0, 0), 6)
        side = 48 + 16 * i
        chip = cv2.resize(read_image(path), (side, side), interpolation=cv2.INTER_AREA)
        x0 = y0 = (128 - side) // 2
        canvas[y0:y0 + side, x0:x0 + side] = chip
        images.append(torch.from_numpy(canvas[..., ::-1].copy()).permute(2, 0, 1).float())
        boxes.append(torch.tensor([[x0 + 0.1 * side, y0, x0 + 0.9 * side, y0 + side]]))
        eyes = [[x0 + 0.3 * side, y0 + 0.3 * side], [x0 + 0.7 * side, y0 + 0.3 * side]]
        kps.append(torch.tensor([eyes + [[x0 + 0.5 * side, y0 + 0.52 * side], [x0 + 0.33 * side, y0 + 0.69 * side],
                                         [x0 + 0.67 * side, y0 + 0.69 * side]]]))
    x = torch.stack(images)
    net = YuNet().train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss, parts = detection_loss(net(x), boxes, kps, 128, 128)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        assert parts["fg"] > 0
    assert np.isfinite(losses).all()
    assert min(losses[-3:]) < 0.7 * losses[0], losses


def test_publish_writes_a_loadable_detector_with_its_card(tmp_path: Path):
    import hashlib

    from agescan.detect import create_detector
    from agescan.train.detector import publish

    run = tmp_path / "run"
    export(YuNet().eval(), _card(score_threshold=0.85), run / "best.onnx")
    path, sha = publish(run, tmp_path / "weights", "my-detector", min_face_px=12, max_face_px=256,
                        metrics={"val": {"eyeband": 0.99}}, notes="test")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    det = create_detector(str(path), threads=1).load()
    card = det.card
    assert (card.id, card.min_face_px, card.max_face_px, card.score_threshold) == ("my-detector", 12, 256, 0.85)
    assert card.metrics["val"] == {"eyeband": 0.99}
    md = (tmp_path / "weights" / "my-detector.md").read_text()
    assert sha in md and "my-detector" in md and "12 to" in md
    assert det.scales(960, 1280)[0] == 0.5  # min_face_size 24 maps to 12 px at the network input
