"""agescan runs offline: onnxruntime's telemetry (1.32 on Linux records events with a persistent device id under
~/.cache/Microsoft/DeveloperTools and tries to send them to mobile.events.data.microsoft.com) is switched off in
every agescan process, and a process where agescan cannot switch it off is warned."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(tmp_path, code: str, *argv: str, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``python -c code`` (or ``python -m agescan ARGV`` when ``code`` is empty) with a fresh home; returns what it
    wrote there."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    e = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    e.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), **env)
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "agescan", *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    return out, written


_ESTIMATE = ("import agescan, skimage.data, numpy as np; "
             "r = agescan.AgeEstimator().predict(skimage.data.astronaut()); assert len(r.faces) == 1")


def test_no_telemetry_is_recorded(tmp_path, astronaut_path):
    control, wrote = _run(tmp_path / "on", _ESTIMATE, ORT_DISABLE_TELEMETRY="0")  # the user asked for it
    if not any("Microsoft" in p for p in wrote):
        pytest.skip("this onnxruntime records no telemetry even when asked to: nothing to switch off")
    assert "telemetry is on" in control.stderr  # and is told so
    out, wrote = _run(tmp_path / "default", _ESTIMATE)
    assert wrote == [] and "telemetry" not in out.stderr
    # the command line too
    out, wrote = _run(tmp_path / "cli", "", "estimate", str(astronaut_path), "--json")
    assert wrote == [] and '"age"' in out.stdout


def test_onnxruntime_imported_first_is_warned(tmp_path):
    out, _ = _run(tmp_path, "import onnxruntime\n" + _ESTIMATE)
    assert "onnxruntime's telemetry is on in this process" in out.stderr
