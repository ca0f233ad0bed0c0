"""Shared helpers of the service tests: a real uvicorn server in this process or in a subprocess, and hostile
inputs (the malformed-request suite, also run by benchmarks/service_load.py)."""

from __future__ import annotations

import io
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="FastAPI is not installed (pip install 'agescan[serve]')")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'agescan[serve]')")

REPO = Path(__file__).resolve().parents[2]


def _noise(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become healthy")


class Recorder:
    """ASGI wrapper keeping what the server received: (path, query, headers, body) of every POST."""

    def __init__(self, app):
        self.app, self.posts = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []

        async def recording():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
                    self.posts.append((scope["path"], scope["query_string"].decode(), headers, b"".join(chunks)))
            return message

        return await self.app(scope, recording, send)


class ThreadServer:
    """uvicorn serving ``create_app(config)`` on a thread of this process (for configurations the CLI does not
    expose, e.g. a one-second body timeout), with what it receives recorded (``posts``)."""

    def __init__(self, config):
        import uvicorn

        from agescan.service import uvicorn_options
        from agescan.service.app import create_app

        self.port = config.port
        self.recorder = Recorder(create_app(config))
        self.server = uvicorn.Server(uvicorn.Config(self.recorder, **uvicorn_options(config)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def posts(self) -> list:
        return self.recorder.posts

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        wait_healthy(self.url)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` pixels, with a tiny compressed body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def zip_bomb(inflated: int = 200 * 1024 * 1024) -> bytes:
    """A zip whose one member inflates to ``inflated`` bytes of zeros (about 200 KB on the wire)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("photo.jpg", "w") as fh:
            block = b"\x00" * (1 << 20)
            for _ in range(inflated >> 20):
                fh.write(block)
    return buf.getvalue()


def malformed_requests(image: bytes) -> list[tuple[str, str, dict, bytes | None, dict]]:
    """(name, path with query, headers, body, httpx extras) of requests that must all get a 4xx, never a 500."""
    jpeg_cut = image[: len(image) // 2]
    boundary = "agescanboundary"

    def multipart(parts: list[tuple[str, bytes, str]]) -> bytes:
        out = b""
        for name, data, ctype in parts:
            out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x\"\r\n"
                    f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
        return out + f"--{boundary}--\r\n".encode()

    mp = {"content-type": f"multipart/form-data; boundary={boundary}"}
    img = {"content-type": "image/jpeg"}
    cases = [
        ("threshold not a number", "/v1/age-check?threshold=abc", img, image),
        ("threshold missing", "/v1/age-check", img, image),
        ("threshold zero", "/v1/age-check?threshold=0", img, image),
        ("threshold 1000", "/v1/age-check?threshold=1000", img, image),
        ("threshold fractional", "/v1/age-check?threshold=17.5", img, image),
        ("challenge age under threshold", "/v1/age-check?threshold=18&challenge_age=12", img, image),
        ("challenge age NaN", "/v1/age-check?threshold=18&challenge_age=nan", img, image),
        ("max_error too large", "/v1/age-check?threshold=18&max_error=0.9", img, image),
        ("unknown privacy op", "/v1/age-check?threshold=18&anonymise=blur", img, image),
        ("unknown query parameter", "/v1/age-check?threshold=18&anonymize=eye-mosaic", img, image),
        ("threshold twice", "/v1/age-check?threshold=18&threshold=21", img, image),
        ("distribution not a boolean", "/v1/estimate?distribution=maybe", img, image),
        ("no content type", "/v1/estimate", {}, image),
        ("text/plain", "/v1/estimate", {"content-type": "text/plain"}, b"hello"),
        ("json body", "/v1/estimate", {"content-type": "application/json"}, b'{"image": "x"}'),
        ("empty body", "/v1/estimate", img, b""),
        ("not an image", "/v1/estimate", img, b"this is not an image at all" * 10),
        ("random bytes", "/v1/estimate", {"content-type": "application/octet-stream"}, _noise(5000)),
        ("PDF", "/v1/age-check?threshold=18", img, b"%PDF-1.4\n" + _noise(2000)),
        ("truncated JPEG", "/v1/age-check?threshold=18", img, jpeg_cut),
        ("JPEG header only", "/v1/estimate", img, image[:200]),
        ("PNG bomb 100000x100000", "/v1/age-check?threshold=18", {"content-type": "image/png"}, png_bomb()),
        ("zip bomb as upload", "/v1/estimate", {"content-type": "application/octet-stream"}, zip_bomb()),
        ("zip bomb as multipart image", "/v1/age-check?threshold=18", mp,
         multipart([("image", zip_bomb(), "application/zip")])),
        ("body over the limit", "/v1/estimate", img, b"\xff\xd8\xff" + b"\x00" * (11 * 1024 * 1024)),
        ("Content-Length of 1 GB", "/v1/estimate", {**img, "content-length": str(1 << 30)}, b"\xff\xd8\xff"),
        ("Content-Length not a number", "/v1/estimate", {**img, "content-length": "12abc"}, None),
        ("multipart without boundary", "/v1/estimate", {"content-type": "multipart/form-data"}, b"--x\r\n"),
        ("multipart garbage", "/v1/estimate", mp, b"--agescanboundary\r\nno headers here" + _noise(100)),
        ("multipart without image", "/v1/estimate", mp, multipart([("faces", b"[]", "application/json")])),
        ("multipart unknown field", "/v1/estimate", mp, multipart([("image", image, "image/jpeg"),
                                                                      ("extra", b"x", "text/plain")])),
        ("multipart image twice", "/v1/estimate", mp, multipart([("image", image, "image/jpeg"),
                                                                    ("image", image, "image/jpeg")])),
        ("multipart too many parts", "/v1/estimate", mp, multipart([("image", b"x", "image/jpeg")] * 6)),
        ("faces not JSON", "/v1/age-check?threshold=18", mp, multipart([("image", image, "image/jpeg"),
                                                                           ("faces", b"{not json", "text/plain")])),
        ("faces wrong shape", "/v1/age-check?threshold=18", mp,
         multipart([("image", image, "image/jpeg"), ("faces", b'[{"box": [1, 2]}]', "application/json")])),
        ("faces outside the image", "/v1/age-check?threshold=18", mp, multipart([
            ("image", image, "image/jpeg"),
            ("faces", b'[{"box": [10, 10, 9000, 9000], "landmarks": [[1,1],[2,2],[3,3],[4,4],[5,5]]}]',
             "application/json")])),
        ("faces NaN", "/v1/age-check?threshold=18", mp, multipart([
            ("image", image, "image/jpeg"),
            ("faces", b'[{"box": [NaN, 0, 10, 10], "landmarks": [[1,1],[2,2],[3,3],[4,4],[5,5]]}]',
             "application/json")])),
        ("faces score NaN", "/v1/estimate", mp, multipart([
            ("image", image, "image/jpeg"),
            ("faces", b'[{"box": [0, 0, 10, 10], "landmarks": [[1,1],[2,2],[3,3],[4,4],[5,5]], "score": NaN}]',
             "application/json")])),
        ("faces nested deeply", "/v1/age-check?threshold=18", mp, multipart([
            ("image", image, "image/jpeg"), ("faces", b"[" * 5000 + b"]" * 5000, "application/json")])),
        ("1000 faces", "/v1/age-check?threshold=18", mp, multipart([
            ("image", image, "image/jpeg"),
            ("faces", ("[" + ",".join(['{"box": [0, 0, 10, 10], "landmarks": [[1,1],[2,2],[3,3],[4,4],[5,5]]}']
                                      * 1000) + "]").encode(), "application/json")])),
        ("faces not UTF-8", "/v1/age-check?threshold=18", mp, multipart([("image", image, "image/jpeg"),
                                                                            ("faces", b"\xff\xfe\x00", "text/plain")])),
        ("wrong method", "/v1/estimate", {}, b""),
        ("unknown path", "/v1/nope", img, image),
    ]
    return [(n, p, h, b, {"method": "GET"} if n == "wrong method" else {}) for n, p, h, b in cases]


def needs_raw_socket(case) -> bool:
    """Whether a malformed case must be sent by hand (no body, or a Content-Length its body does not have: httpx
    would refuse to send it)."""
    _, _, headers, body, _ = case
    return body is None or ("content-length" in headers and len(body) != int(headers["content-length"]))


def send_case(client, port: int, case) -> int:
    """Send one case of :func:`malformed_requests` (through ``client``, an httpx.Client on the server, or by hand);
    the answer's status (0 when there is none)."""
    _, path, headers, body, extra = case
    if not needs_raw_socket(case):
        return client.request(extra.get("method", "POST"), path, headers=headers, content=body).status_code
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if "content-length" not in headers:
        head += "content-length: 0\r\n"
    raw = send_raw(port, f"POST {path} HTTP/1.1\r\nhost: x\r\n{head}\r\n".encode() + (body or b""), timeout=20)
    return int(raw.split(b" ", 2)[1]) if raw else 0


def send_raw(port: int, request: bytes, timeout: float = 30.0) -> bytes:
    """Send bytes on a fresh connection; return what the server answers before closing (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks) and b'"error"' in b"".join(chunks):
                    break
        except socket.timeout:
            pass
    return b"".join(chunks)


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut_path) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(astronaut_path).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def serve_subprocess(*args: str, env: dict | None = None, wrapper: str | None = None) -> tuple[subprocess.Popen, str]:
    """``agescan serve`` in a subprocess on a free port; returns (process, base URL). ``wrapper`` is Python code run
    before the CLI in the same interpreter (e.g. to install an audit hook)."""
    port = free_port()
    code = (wrapper or "") + "\nimport sys\nfrom agescan.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=(env or {}).get("AGESCAN_TEST_CWD"))
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url
