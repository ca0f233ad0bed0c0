"""Videos: sampled frames with index and timestamp, through the estimator, the CLI and the store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

from agescan import AgeEstimator, read_image
from agescan.io.video import iter_frames


@pytest.fixture()
def video(tmp_path, astronaut_path):
    """A 4-second, 10 fps clip: the astronaut for 2 s, then 2 s of a blank wall."""
    face = cv2.resize(read_image(astronaut_path), (320, 320))[:, :, ::-1]
    path = tmp_path / "clip one.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 320))
    for i in range(40):
        w.write(face if i < 20 else np.full((320, 320, 3), 170, np.uint8))
    w.release()
    return path


def test_frames_are_sampled_by_time(video):
    frames = list(iter_frames(str(video), every_seconds=1.0))
    assert [f.frame_index for f in frames] == [0, 10, 20, 30]
    assert [f.timestamp for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert frames[0].image.shape == (320, 320, 3) and len({f.sha256 for f in frames}) == 1
    assert len(list(iter_frames(str(video), every_seconds=0.5))) == 8


def test_frames_are_sampled_at_scene_changes(video):
    # The cut from face to wall at 2.0 s is found by the 5-per-second probe (every 2nd frame at 10 fps).
    assert [f.frame_index for f in iter_frames(str(video), every_seconds=0, scene_change=0.15)] == [0, 20]
    both = list(iter_frames(str(video), every_seconds=1.5, scene_change=0.15))
    assert [(f.frame_index, f.timestamp) for f in both] == [(0, 0.0), (15, 1.5), (20, 2.0), (30, 3.0)]
    # A threshold above any difference in the clip finds no cut: time sampling alone.
    assert [f.frame_index for f in iter_frames(str(video), every_seconds=1.0, scene_change=0.99)] == [0, 10, 20, 30]
    with pytest.raises(ValueError, match="scene change"):
        list(iter_frames(str(video), every_seconds=0, scene_change=0))
    from agescan import ConfigError

    with pytest.raises(ConfigError, match="no video frame"):
        AgeEstimator(video_every=0, video_scene=0)
    results = list(AgeEstimator(video_every=0, video_scene=0.15).stream([str(video)]))
    assert [(r.provenance.frame_index, len(r.faces)) for r in results] == [(0, 1), (20, 0)]


def test_stream_gives_one_result_per_frame_and_records_broken_videos(video, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    out = list(AgeEstimator(video_every=1.0).stream([video, broken]))
    assert [(r.provenance.frame_index, len(r.faces)) for r in out[:4]] == [(0, 1), (10, 1), (20, 0), (30, 0)]
    assert out[1].provenance.timestamp == 1.0 and out[0].source == str(video)
    assert out[4].source == str(broken) and out[4].error_type == "DecodeError" and out[4].provenance.frame_index == -1


def test_cli_scan_of_a_video_into_the_store(video, tmp_path):
    db = tmp_path / "case.sqlite"
    cmd = [sys.executable, "-m", "agescan", "scan", str(video.parent), "--db", str(db), "--no-progress",
           "--video-every", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = sqlite3.connect(db).execute("SELECT frame_index, timestamp, n_faces FROM items ORDER BY frame_index")
    assert rows.fetchall() == [(0, 0.0, 1), (20, 2.0, 0)]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "scanned 0 new or retried file(s)" in again.stderr  # stored frames are skipped
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM items").fetchone()[0] == 2  # nothing duplicated
    rep = subprocess.run([sys.executable, "-m", "agescan", "report", "--db", str(db), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    page = (tmp_path / "r" / "index.html").read_text()
    assert rep.returncode == 0 and page.count("class='thumb'") == 1 and "frame 0 at 0.0 s" in page
    assert "<p>1 file(s) scanned (2 items with the sampled frames" in page  # a video is one file (was "2 file(s)")
    assert "now holds 1 file(s) (2 items with their frames)" in again.stderr
    js = subprocess.run([sys.executable, "-m", "agescan", "estimate", "--json", str(video)], capture_output=True,
                        text=True, timeout=300)
    recs = [json.loads(line) for line in js.stdout.splitlines()]
    assert [(r["frame_index"], r["timestamp"]) for r in recs] == [(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0)]


def test_a_video_whose_name_is_not_utf8_is_scanned(video, tmp_path, astronaut_path):
    """OpenCV crashed the whole process (a segmentation fault, exit 139, every file lost) on a video whose name is not
    UTF-8; it now opens it by its descriptor, and the frames are recorded under the escaped id."""
    import os
    import shutil

    case = tmp_path / "case"
    case.mkdir()
    shutil.copy(astronaut_path, case / "a.png")
    shutil.copy(video, case / os.fsdecode(b"m\xe9.mp4"))
    db = tmp_path / "case.sqlite"
    out = subprocess.run([sys.executable, "-m", "agescan", "scan", str(case), "--db", str(db), "--no-progress",
                          "--video-every", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = sqlite3.connect(db).execute("SELECT source, frame_index, n_faces FROM items ORDER BY source, frame_index")
    assert rows.fetchall() == [(str(case / "a.png"), -1, 1), (str(case / "m\\xe9.mp4"), 0, 1),
                               (str(case / "m\\xe9.mp4"), 20, 0)]
    rep = subprocess.run([sys.executable, "-m", "agescan", "report", "--db", str(db), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    page = (tmp_path / "r" / "index.html").read_text()
    assert rep.returncode == 0 and page.count("class='thumb'") == 2 and "source unreadable" not in page
