"""Shared fixtures: real faces from ../shared/data (skipped with a reason when absent) and public photos."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AGESCAN_SHARED", REPO.parent / "shared"))
UTKFACE = SHARED / "data" / "utkface"
FAIRFACE = SHARED / "data" / "fairface270"


def fairface_rows() -> list[dict]:
    """fairface270's labels (FairFace loose crops, CC BY 4.0; age bins); skips the test when the set is absent."""
    if not (FAIRFACE / "labels.csv").is_file():
        pytest.skip(f"in-the-wild faces not available: {FAIRFACE}/labels.csv is absent (set AGESCAN_SHARED to the "
                    "shared/ folder holding data/fairface270)")
    with open(FAIRFACE / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def utkface_rows(split: str = "test") -> list[dict]:
    if not (UTKFACE / "labels.csv").is_file():
        pytest.skip(f"real faces not available: {UTKFACE}/labels.csv is absent (set AGESCAN_SHARED to the shared/ "
                    f"folder holding data/utkface)")
    with open(UTKFACE / "labels.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == split]


#: Pairs of different people from UTKFace's test split whose 64-bit dHash (the near-duplicate rule before PDQ)
#: differs by 1 and 2 bits: the old report hid one of each pair under the other. The second pair is a girl of 16
#: and a woman of 20.
LOOKALIKES = (("19_1_3_20170119152816720", "26_0_0_20170104165824281"),
              ("16_1_0_20170109201603478", "20_1_2_20170104020257804"))


def lookalike_paths() -> list[Path]:
    """The four faces of :data:`LOOKALIKES` (skips the test with the reason when the real faces are absent)."""
    utkface_rows("test")
    return [UTKFACE / "images" / f"{name}.jpg.chip.jpg" for pair in LOOKALIKES for name in pair]


@pytest.fixture(scope="session")
def utkface_faces() -> list[tuple[Path, int]]:
    """Twelve real test-split faces covering children to the elderly: (path, age)."""
    rows = utkface_rows("test")
    picked, wanted = [], [1, 3, 5, 8, 12, 15, 17, 22, 30, 45, 60, 80]
    for age in wanted:
        for r in rows:
            if int(r["age"]) == age:
                picked.append((UTKFACE / r["path"], age))
                break
    return picked


@pytest.fixture(scope="session")
def astronaut_path() -> Path:
    """The public-domain NASA portrait of Eileen Collins that ships inside scikit-image."""
    import importlib.resources as res

    return Path(str(res.files("skimage.data") / "astronaut.png"))


@pytest.fixture(scope="session")
def astronaut(astronaut_path) -> np.ndarray:
    from agescan import read_image

    return read_image(astronaut_path)


@pytest.fixture(scope="session")
def estimator():
    from agescan import AgeEstimator

    return AgeEstimator().load()


def scene_with_faces(faces: list[np.ndarray], size=(480, 640), seed: int = 0) -> tuple[np.ndarray, list[tuple]]:
    """Paste face chips (padded with their own edge) into a textured background; returns image and boxes."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    bg = cv2.GaussianBlur(rng.integers(60, 200, (h, w, 3), dtype=np.uint8), (0, 0), 8)
    boxes = []
    x = 20
    for f in faces:
        side = f.shape[0]
        y = int(rng.integers(10, h - side - 10))
        bg[y:y + side, x:x + side] = f
        boxes.append((x, y, x + side, y + side))
        x += side + 30
    return bg, boxes


def _pg_bin(name: str) -> str | None:
    import glob
    import shutil

    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


@pytest.fixture(scope="session")
def postgres_server():
    """A real, throwaway PostgreSQL server on loopback (Debian's postgresql package; .ci/run installs it).

    Run as the ``postgres`` system user when the tests run as root (PostgreSQL refuses root). Yields a
    function that creates a fresh database and returns its ``postgresql://`` URL.
    """
    import shutil
    import socket
    import subprocess
    import tempfile

    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'agescan[postgres]')")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql; .ci/run does this)")
    root = Path(tempfile.mkdtemp(prefix="agescan-pg-"))  # under /tmp: reachable by the postgres user
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(initdb, "-D", str(data), "-A", "trust", "-U", "agescan", "-E", "UTF8", "--no-sync")
    run(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "start",
        "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off")
    import psycopg

    base = f"postgresql://agescan@127.0.0.1:{port}"
    counter = iter(range(10**6))

    def new_database() -> str:
        name = f"case{next(counter)}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"{base}/{name}"

    try:
        yield new_database
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path):
    """A fresh results database of each engine: a SQLite file path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "case.sqlite")
    return request.getfixturevalue("postgres_server")()


MORPH = SHARED / "data" / "morph_small"


def morph_rows() -> list[dict]:
    """Rows of morph_small's labels.csv (path, age, gender, subject); skips the test with the reason when absent."""
    if not (MORPH / "labels.csv").is_file():
        pytest.skip(f"MORPH subset not available: {MORPH}/labels.csv is absent (set AGESCAN_SHARED to the shared/ "
                    f"folder holding data/morph_small)")
    with open(MORPH / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))
