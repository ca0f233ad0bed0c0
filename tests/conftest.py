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


def utkface_rows(split: str = "test") -> list[dict]:
    if not (UTKFACE / "labels.csv").is_file():
        pytest.skip(f"real faces not available: {UTKFACE}/labels.csv is absent (set AGESCAN_SHARED to the shared/ "
                    f"folder holding data/utkface)")
    with open(UTKFACE / "labels.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == split]


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
