"""Whole-scan throughput and memory: `agescan scan ... --db` run as a user runs it, timed from outside.

    python benchmarks/make_scan_corpus.py /tmp/scan-corpus --n 10000
    python benchmarks/scan_throughput.py /tmp/scan-corpus --label "10k photos, 2 workers" --workers 2 \
        --json runs/bench/scan-10k-w2.json

Each call runs one fresh scan (new database) in a subprocess and samples the resident memory of the scan
and all its children (Ray's workers included) every half second from /proc. Reports files/s, items, faces,
errors, peak and final RSS, and RSS at each tenth of the run (to show whether memory stays flat).
Pass ``--engine ray`` (and e.g. ``--partition-size 250``) for the distributed mode on this machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common


def _children(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                todo.extend(int(k) for k in kids)
        except OSError:
            pass
    return out


def rss_mb(pid: int) -> float:
    total = 0
    for p in _children(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def count_items(db: Path) -> tuple[int, int, int]:
    from agescan.store import connect

    d = connect(db, readonly=True)
    try:
        items = d.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        faces = d.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        errors = d.execute("SELECT COUNT(*) FROM items WHERE error != ''").fetchone()[0]
        return items, faces, errors
    finally:
        d.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+")
    p.add_argument("--label", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--engine", default="local", choices=["local", "ray"])
    p.add_argument("--partition-size", type=int, default=250)
    p.add_argument("--extra", default="", help="more scan options, space-separated")
    p.add_argument("--json", help="append the result to this JSON file")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="agescan-scanbench-"))
    db = work / "case.sqlite"
    cmd = [sys.executable, "-m", "agescan", "scan", *a.sources, "--db", str(db), "--no-progress",
           "--workers", str(a.workers), *a.extra.split()]
    if a.engine == "ray":
        cmd += ["--engine", "ray", "--partition-size", str(a.partition_size), "--work-dir", str(work / "parts")]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        samples.append((time.time() - t0, rss_mb(proc.pid)))
        time.sleep(0.5)
    wall = time.time() - t0
    err = proc.stderr.read()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"scan failed ({proc.returncode}): {err[-2000:]}")
    items, faces, errors = count_items(db)
    tenths = [max((r for t, r in samples if t <= wall * k / 10), default=0.0) for k in range(1, 11)]
    res = {"label": a.label, "command": " ".join(cmd[1:]), "wall_s": round(wall, 1), "items": items,
           "faces": faces, "errors": errors, "items_per_s": round(items / wall, 2),
           "peak_rss_mb": round(max((r for _, r in samples), default=0.0), 1),
           "rss_mb_by_tenth": [round(x, 1) for x in tenths], "machine": _common.machine(),
           "db_bytes": sum(f.stat().st_size for f in work.glob("case.sqlite*")),
           "parquet_bytes": sum(f.stat().st_size for f in work.glob("parts/*.parquet")),
           "scan_summary": err.strip().splitlines()[-1] if err.strip() else ""}
    print(res)
    if a.json:
        import json

        path = Path(a.json)
        old = json.loads(path.read_text()) if path.exists() else []
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(old + [res], indent=2))


if __name__ == "__main__":
    main()
