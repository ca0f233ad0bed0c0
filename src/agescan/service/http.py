"""The service's HTTP plumbing: JSON errors, API keys, admission (a concurrency limit with fast 503s), bodies read
into memory under a size limit and a deadline, multipart parsed in memory, and response headers.

Nothing here touches the disk: Starlette's own form parser spools uploads over 1 MB to temporary files, so
multipart bodies are parsed here, from memory, with python-multipart's streaming parser.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request

#: Content types accepted as a raw image body.
RAW_TYPES = ("image/", "application/octet-stream")
#: Multipart fields read (anything else is refused: a client sending unknown fields is probably misconfigured).
MULTIPART_FIELDS = {"image", "faces"}
MAX_PARTS = 4


class ServiceError(Exception):
    """An error answered as ``{"error": {"status", "code", "message"}}`` with its status code."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


def check_api_key(request: Request, keys: tuple[str, ...]) -> None:
    """Accept ``X-API-Key: KEY`` or ``Authorization: Bearer KEY`` when ``keys`` are configured (constant-time)."""
    if not keys:
        return
    given = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if not given:
        raise ServiceError(401, "api_key_missing", "This server needs an API key: send it as X-API-Key or "
                                                   "Authorization: Bearer.", {"WWW-Authenticate": "Bearer"})
    ok = False
    for k in keys:  # every key compared, so the time taken says nothing about which prefix matched
        ok |= hmac.compare_digest(given.encode(), k.encode())
    if not ok:
        raise ServiceError(401, "api_key_invalid", "The API key is not valid.", {"WWW-Authenticate": "Bearer"})


class Admission:
    """Requests admitted at once (computing or waiting for a compute thread). Past the limit a request is refused
    at once (503), before its body is read, so a flood costs the server almost nothing. Used from the event loop
    only, so a counter is enough."""

    def __init__(self, limit: int):
        self.limit, self.active, self.refused = limit, 0, 0

    def enter(self) -> None:
        if self.active >= self.limit:
            self.refused += 1
            raise ServiceError(503, "busy", f"The server is at its limit of {self.limit} requests in progress; retry "
                                            "shortly.", {"Retry-After": "1"})
        self.active += 1

    def leave(self) -> None:
        self.active -= 1


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The request body, in memory: 413 past ``max_bytes`` (from Content-Length before reading, or while reading),
    408 when the client takes longer than ``timeout`` seconds to send it."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ServiceError(400, "bad_request", "Content-Length is not a number.")
        if int(length) > max_bytes:
            raise ServiceError(413, "body_too_large", f"The body ({int(length):,} bytes) is larger than the limit "
                                                      f"of {max_bytes:,} bytes.")
    chunks: list[bytes] = []

    async def pump() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise ServiceError(413, "body_too_large", f"The body is larger than the limit of {max_bytes:,} bytes.")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(pump(), timeout)
    except asyncio.TimeoutError:
        raise ServiceError(408, "body_timeout", f"The body was not received within {timeout:g} s.") from None
    except ClientDisconnect:
        raise ServiceError(400, "client_disconnected", "The client closed the connection while sending.") from None
    return b"".join(chunks)


@dataclass
class Upload:
    """What a request sent: the image's bytes and, optionally, the faces found where it was anonymised (JSON)."""

    image: bytes
    faces_json: str | None = None
    fields: dict = field(default_factory=dict)


def parse_upload(content_type: str, body: bytes) -> Upload:
    """A raw image body (``image/*``, ``application/octet-stream``) or ``multipart/form-data`` with an ``image``
    field and an optional ``faces`` field; 415 for anything else, 400 for a malformed multipart body."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype.startswith(RAW_TYPES):
        if not body:
            raise ServiceError(400, "empty_body", "The body is empty: send the image's bytes.")
        return Upload(body)
    if ctype == "multipart/form-data":
        parts = _multipart(content_type, body)
        if "image" not in parts:
            raise ServiceError(400, "image_missing", "The multipart body has no 'image' field.")
        faces = parts.get("faces")
        try:
            faces_text = faces.decode("utf-8") if faces is not None else None
        except UnicodeDecodeError:
            raise ServiceError(400, "bad_faces", "The 'faces' field is not UTF-8 JSON.") from None
        if not parts["image"]:
            raise ServiceError(400, "empty_body", "The 'image' field is empty.")
        return Upload(parts["image"], faces_text)
    shown = ctype or "none"
    raise ServiceError(415, "unsupported_media_type", f"Content-Type {shown!r} is not accepted: send the image as "
                                                      "image/* (or application/octet-stream), or as the 'image' "
                                                      "field of multipart/form-data.")


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServiceError(400, "bad_multipart", "The multipart Content-Type has no boundary.")
    parts: dict[str, bytes] = {}
    state = {"field": b"", "value": b"", "name": None, "data": [], "count": 0, "headers": {}}

    def on_part_begin() -> None:
        state["count"] += 1
        if state["count"] > MAX_PARTS:
            raise ServiceError(400, "bad_multipart", f"More than {MAX_PARTS} parts.")
        state.update(name=None, data=[], headers={})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if name not in MULTIPART_FIELDS:
            raise ServiceError(400, "bad_multipart", f"Unknown multipart field {name[:40]!r}: this endpoint reads "
                                                     "'image' and 'faces'.")
        if name in parts:
            raise ServiceError(400, "bad_multipart", f"The field {name!r} is sent twice.")
        state["name"] = name

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        parts[state["name"]] = b"".join(state["data"])

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end}
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except ServiceError:
        raise
    except Exception as exc:  # noqa: BLE001  (python-multipart's errors: a malformed body)
        raise ServiceError(400, "bad_multipart", f"The multipart body is malformed ({type(exc).__name__}).") from None
    return parts


def json_bytes(data) -> bytes:
    return json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")


#: Sent with every response: nothing cached, nothing sniffed, no referrer, not framed.
SECURITY_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin")]


class SecurityHeaders:
    """Pure ASGI middleware adding :data:`SECURITY_HEADERS` to every response (no buffering of bodies)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def wrapped(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in SECURITY_HEADERS if k not in names]]
            await send(message)

        await self.app(scope, receive, wrapped)
