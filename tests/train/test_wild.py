"""In-the-wild training: the registered degradations, the yaw-like training grid, box-framed training crops from
real faces, and fine-tuning from the weights agescan ships."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agescan import create_model  # noqa: E402
from agescan.train.loop import TrainConfig, augment_grid, initial_teacher, teacher_probs, to_input, train  # noqa: E402
from agescan.train.nets import Ensemble, ProbsWrapper, build, load_init  # noqa: E402
from agescan.train.wild import GEOMETRIC, augmentations, parse_wild  # noqa: E402


@pytest.fixture(scope="module")
def faces(astronaut):
    """16 real face crops in [0, 1]: the astronaut's face at 64 px, shifted a little each."""
    import cv2

    crop = cv2.resize(astronaut[20:220, 140:340], (72, 72), interpolation=cv2.INTER_AREA)
    batch = np.stack([crop[i % 8:i % 8 + 64, (i // 2) % 8:(i // 2) % 8 + 64] for i in range(16)])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("name", augmentations.names())
def test_each_degradation_is_pure_seeded_and_touches_the_share_asked(faces, name):
    before = faces.clone()
    fn = augmentations.create(name)
    out = fn(faces, torch.Generator().manual_seed(1), 1.0)
    assert out.shape == faces.shape and torch.equal(faces, before)  # the input is never modified
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    changed = (out - faces).abs().flatten(1).amax(1) > 0.02
    assert bool(changed.all()), f"{name} left {int((~changed).sum())} of 16 faces as they were at p=1"
    assert torch.equal(fn(faces, torch.Generator().manual_seed(0), 0.0), faces)  # p=0: nothing
    again = fn(faces, torch.Generator().manual_seed(1), 1.0)
    assert torch.equal(out, again)  # the generator is the only source of randomness


def test_degradations_do_what_they_say(faces):
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731

    def sharpness(x):  # mean absolute horizontal gradient
        return float((x[..., 1:] - x[..., :-1]).abs().mean())

    for name in ("lowres", "defocus", "motion"):
        assert sharpness(augmentations.create(name)(faces, g(), 1.0)) < 0.8 * sharpness(faces), name
    cast = augmentations.create("colour-cast")(faces, g(), 1.0)
    ratio = cast.mean((2, 3)) / faces.mean((2, 3))
    assert float((ratio.max(1).values - ratio.min(1).values).mean()) > 0.05  # channels moved differently
    occluded = augmentations.create("occlusion")(faces, g(), 1.0)
    share = ((occluded - faces).abs().sum(1) > 0.05).float().mean((1, 2))
    assert bool(((share > 0.05) & (share < 0.7)).all())  # a part of the face, never all of it


def test_names_are_checked_and_all_includes_the_geometric_one():
    assert set(parse_wild("all")) == set(augmentations.names()) | set(GEOMETRIC)
    assert parse_wild("jpeg, yaw") == ("jpeg", "yaw") and parse_wild("") == ()
    with pytest.raises(ValueError, match="unknown augmentation.*'sepia'"):
        parse_wild("jpeg,sepia")


def test_yaw_like_grids_squeeze_and_shift_a_share_of_the_faces():
    cfg = TrainConfig(data="", out="", wild="yaw", wild_p=0.5, rotate_deg=0, scale_jitter=0, shift=0)
    grid = augment_grid(400, cfg, 96, True, torch.Generator().manual_seed(0))
    width = grid[:, 0, -1, 0] - grid[:, 0, 0, 0]  # the span of source x one output row samples
    plain = augment_grid(1, TrainConfig(data="", out=""), 96, False, torch.Generator())[0, 0, -1, 0] * 2
    squeezed = width.abs() > float(plain.abs()) * 1.05
    assert 0.35 < float(squeezed.float().mean()) < 0.65  # about wild_p of them
    assert float(width.abs().max()) <= float(plain.abs()) / 0.65 + 1e-4


def test_wild_training_input_is_deterministic_and_leaves_the_crops_alone():
    crops = np.random.default_rng(0).integers(0, 255, (8, 96, 96, 3), dtype=np.uint8)
    before = crops.copy()
    cfg = TrainConfig(data="", out="", wild="all", wild_p=0.5)
    a = to_input(crops, cfg, True, torch.Generator().manual_seed(5))
    b = to_input(crops, cfg, True, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and np.array_equal(crops, before) and a.shape == (8, 3, 64, 64)


def test_the_shipped_default_loads_into_torch_with_parity():
    """--init NAME#K: each member of the shipped ensemble, rebuilt in torch, gives the shipped model's output."""
    import onnx
    from onnx import numpy_helper

    shipped = create_model("resnet10x2-ocl.utkface")
    nets = []
    for k in (0, 1):
        net = build("resnet10")
        load_init(net, f"resnet10x2-ocl.utkface#{k}")
        nets.append(net.eval())
    inv_t = [numpy_helper.to_array(t) for t in onnx.load(str(shipped.path)).graph.initializer if t.name == "inv_t"]
    wrapped = ProbsWrapper(Ensemble(nets), 1 / float(inv_t[0]), flip=True).eval()
    x = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        ours = wrapped((torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5).numpy()
    assert np.abs(ours - shipped.predict_probs(x)).max() < 1e-5
    with pytest.raises(ValueError, match="do not fit"):
        load_init(build("dexnet-s"), "resnet10x2-ocl.utkface#0")


class _Pixels(torch.nn.Module):
    """A stand-in network whose 101 "logits" are pixels of its input: its output shows what it was shown."""

    def forward(self, x):
        return x.flatten(1)[:, ::97][:, :101] * 10


def test_distillation_teacher_sees_the_clean_crop_with_the_students_geometry(faces):
    crops = (faces.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    net = _Pixels()
    plain = TrainConfig(data="", out="", input_size=48)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    student = torch.softmax(net(to_input(crops, plain, True, gen)), 1)
    # nothing degraded: the teacher's input is the student's, crop for crop (the generator restarted at its draw)
    assert torch.allclose(teacher_probs(net, crops, plain, state), student)
    # degraded student (every face squeezed like a turned head and shrunk): the teacher still sees the clean crop
    wild = TrainConfig(data="", out="", input_size=48, wild="yaw,lowres", wild_p=1.0)
    gen.set_state(state)
    degraded = torch.softmax(net(to_input(crops, wild, True, gen)), 1)
    assert not torch.allclose(degraded, student)
    assert torch.allclose(teacher_probs(net, crops, wild, state), student)
    assert crops.flags.writeable and crops.dtype == np.uint8  # the crops are read, not changed
    assert initial_teacher(net, plain) is None  # no --distill, no teacher
    with pytest.raises(ValueError, match="--distill needs --init"):
        initial_teacher(net, TrainConfig(data="", out="", distill=0.5))
    frozen = initial_teacher(build("dexnet-s"), TrainConfig(data="", out="", distill=0.5, init="x"))
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.slow
def test_prepare_stores_box_framed_crops_and_a_wild_fine_tune_runs(tmp_path, utkface_faces):
    """Real UTKFace chips through `agescan train prepare` (rule-framed and box-framed crops with their pose), then
    one short epoch of fine-tuning the shipped model with every wild augmentation and the box framing."""
    import csv

    from agescan.detect import DEFAULT_DETECTOR
    from agescan.train.prepare import main as prepare_main
    from agescan.train.prepare import prepare
    from agescan.train.publish import prepare_line

    data = tmp_path / "utk"
    (data / "images").mkdir(parents=True)
    with open(data / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "age", "gender", "race", "split"])
        for i, (path, age) in enumerate(utkface_faces):
            (data / "images" / path.name).write_bytes(path.read_bytes())
            w.writerow([f"images/{path.name}", age, 0, 0, "train" if i % 3 else "val"])
    out = prepare(data, tmp_path / "p.npz", workers=1)
    d = np.load(out)
    assert d["crops"].shape == d["crops_box"].shape == (12, 96, 96, 3)
    assert set(d["framing"]) == {"aligned"} and (np.abs(d["yaw"]) < 45).all()  # UTKFace's chips are frontal
    assert not np.array_equal(d["crops"], d["crops_box"])  # the box framing differs from the warp
    # the file records the command that made it (rebuilt from the arguments of a library call; the CLI's own argv),
    # and a model card trained on it shows that command
    assert str(d["command"]) == (f"python -m agescan.train.prepare {data} {out} --size 96 --margin 0.25 --detector "
                                 f"{DEFAULT_DETECTOR}")
    cli_out = tmp_path / "cli.npz"
    prepare_main([str(data), str(cli_out), "--workers", "1", "--limit", "2"])
    assert prepare_line(str(cli_out)) == (f"python -m agescan.train.prepare {data} {cli_out} --workers 1 --limit 2 "
                                          f"--detector {DEFAULT_DETECTOR}")
    run = train(TrainConfig(data=str(out), out=str(tmp_path / "run"), arch="resnet10", epochs=1, batch_size=8,
                            lr=1e-4, init="resnet10x2-ocl.utkface#0", wild="all", wild_p=0.3, box_p=0.5,
                            occlusion="org+ocl", distill=0.5, threads=1))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["val_mae"]) and log[0]["val_mae"] < 20  # started from the shipped one
