"""Privacy of the service, watched from outside: during requests the server process writes no file anywhere (every
file-creating or file-writing system call traced with strace, every Python-level write-open and file operation
caught by an audit hook, and its private temporary, home and working folders watched with inotify) and logs
nothing."""

from __future__ import annotations

import ctypes
import io
import os
import re
import shutil
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import free_port, malformed_requests, needs_raw_socket, send_case, wait_healthy

#: Installed in the server process before agescan starts: reports writes and file operations on stderr (a pipe).
AUDIT = r'''
import os, sys
_W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_OPS = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.truncate", "os.link", "os.symlink", "os.chmod",
        "shutil.copyfile", "shutil.move", "shutil.rmtree", "tempfile.mkstemp", "tempfile.mkdtemp", "sqlite3.connect"}
def _hook(event, args):
    if event == "open" and not isinstance(args[0], int):
        mode, flags = args[1], args[2]
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _W):
            sys.__stderr__.write(f"AUDIT-WRITE open {args[0]!r} {mode!r}\n"); sys.__stderr__.flush()
    elif event in _OPS:
        sys.__stderr__.write(f"AUDIT-WRITE {event} {args!r}\n"); sys.__stderr__.flush()
sys.addaudithook(_hook)
'''
#: System calls that create, write, rename or remove files (strace's -e trace=...).
SYSCALLS = "open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,mkdir,mkdirat,unlink," \
           "unlinkat,truncate,ftruncate,fallocate"
_WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND")
_FILE_OPS = re.compile(r"^(?:\[pid +\d+\] |\d+ +)?(creat|rename\w*|link\w*|symlink\w*|mkdir\w*|unlink\w*|"
                       r"truncate|ftruncate|fallocate)\(")


class Inotify:
    """Events in a few folders (recursive over what exists when watching starts)."""

    IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x2, 0x8, 0x80, 0x100, 0x200

    def __init__(self, folders):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        if self.fd < 0:
            pytest.skip("inotify is not available")
        mask = self.IN_MODIFY | self.IN_CLOSE_WRITE | self.IN_MOVED_TO | self.IN_CREATE | self.IN_DELETE
        for root in folders:
            for d, _, _ in os.walk(root):
                self.libc.inotify_add_watch(self.fd, d.encode(), mask)

    def events(self) -> int:
        n = 0
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return n
            n += len(data)


@pytest.fixture()
def traced_server(tmp_path):
    home, tmp, cwd = (tmp_path / n for n in ("home", "tmp", "cwd"))
    for d in (home, tmp, cwd):
        d.mkdir()
    port = free_port()
    code = AUDIT + "\nfrom agescan.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    cmd = [sys.executable, "-c", code, "serve", "--port", str(port)]
    strace = shutil.which("strace")
    if strace:
        cmd = [strace, "-f", "-qq", "-e", f"trace={SYSCALLS}", "-o", "/dev/stderr", *cmd]
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (os.path.abspath("src"), os.environ.get("PYTHONPATH", "")) if p)}
    import subprocess

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                            start_new_session=True)  # its own process group: strace and the server stop together
    lines: list[str] = []
    for stream in (proc.stdout, proc.stderr):
        threading.Thread(target=lambda s=stream: lines.extend(iter(s.readline, "")), daemon=True).start()
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}", lines, [home, tmp, cwd], bool(strace)
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _big_jpeg(astronaut: np.ndarray) -> bytes:
    """A 3000x3000 photo of about 2 MB: past Starlette's 1 MB in-memory limit for multipart files, so a server
    using its form parser would spool it to a temporary file."""
    big = np.asarray(Image.fromarray(astronaut).resize((3000, 3000)))
    noisy = np.clip(big.astype(np.int16) + np.random.default_rng(0).integers(-20, 21, big.shape), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.slow
def test_nothing_is_written_to_disk_or_logs_during_requests(traced_server, astronaut, astronaut_jpeg):
    url, lines, private, traced = traced_server
    watch = Inotify(private)
    big = _big_jpeg(astronaut)
    assert len(big) > 1_500_000
    time.sleep(0.5)
    before = len(lines)
    with httpx.Client(base_url=url, timeout=120) as c:
        ok = [
            c.post("/v1/estimate?distribution=true&crops=true&hashes=true", content=astronaut_jpeg,
                   headers={"content-type": "image/jpeg"}),
            c.post("/v1/estimate", files={"image": ("big photo.jpg", big, "image/jpeg")}),
            c.post("/v1/age-check?threshold=18", files={"image": ("big photo.jpg", big, "image/jpeg")}),
            c.post("/v1/age-check?threshold=16&anonymise=eye-mosaic", content=astronaut_jpeg,
                   headers={"content-type": "image/jpeg"}),
            c.get("/"), c.get("/static/page.js"), c.get("/v1/browser-detector/0.onnx"), c.get("/v1/models"),
        ]
        assert all(r.status_code == 200 for r in ok), [r.text[:200] for r in ok if r.status_code != 200]
        # (the cases httpx cannot send make uvicorn log "Invalid HTTP request received": no content, but a line)
        bad = [send_case(c, 0, case) for case in malformed_requests(astronaut_jpeg) if not needs_raw_socket(case)]
        assert all(400 <= status < 500 for status in bad)
    time.sleep(1.0)
    during = lines[before:]
    writes = [l for l in during if l.startswith("AUDIT-WRITE")]
    syscalls = [l for l in during if ("open" in l.split("(")[0] and _WRITE_FLAGS.search(l)) or _FILE_OPS.match(l)]
    # stray output: anything that is neither a traced system call nor an audit line (a log line, a warning)
    logged = [l for l in during if not l.startswith("AUDIT-WRITE") and not re.match(r"^(\[pid +\d+\] |\d+ +)?\w+\(", l)
              and "resumed>" not in l and "+++ exited" not in l and "--- SIG" not in l]
    assert writes == [], writes
    assert syscalls == [], syscalls[:10]
    assert watch.events() == 0
    assert logged == [], logged[:10]
    if not traced:
        pytest.skip("strace is not installed: only the audit hook and inotify watched the server "
                    "(apt-get install strace for the system-call trace)")
