"""Mutated real image files: read_image returns an image or raises DecodeError, never anything else."""

from __future__ import annotations

import numpy as np
import pytest

from agescan import DecodeError, read_image
from tests.fuzz_corpus import seed_files, mutate


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's corrupt-metadata warnings are expected here
def test_mutated_files_never_crash_the_reader(astronaut):
    rng = np.random.default_rng(1234)
    seeds = list(seed_files(astronaut).values())
    decoded = refused = 0
    for _ in range(2000):
        data = mutate(seeds[int(rng.integers(0, len(seeds)))], rng)
        try:
            img = read_image(data, max_pixels=4_000_000)
        except DecodeError as exc:
            assert str(exc).startswith("<bytes>: ")
            refused += 1
        else:
            assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
            decoded += 1
    assert decoded > 100 and refused > 100  # both paths were exercised
