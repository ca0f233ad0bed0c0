"""The service's configuration: one frozen object, validated once, passed to every worker process."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, fields

from agescan._validation import check_number
from agescan.detect import DEFAULT_DETECTOR
from agescan.errors import ConfigError, InputError
from agescan.models import DEFAULT_MODEL

#: Where a worker process finds its configuration (uvicorn starts workers by importing the app factory).
ENV_CONFIG = "AGESCAN_SERVICE_CONFIG"
#: Comma-separated API keys, when not given in a file.
ENV_KEYS = "AGESCAN_API_KEYS"


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of ``agescan serve`` (see ``agescan serve --help`` and docs/service.md).

    Args:
        host, port: where to listen (default loopback: 127.0.0.1:8000).
        model, detector, min_face_size, minor_age: the estimator's (defaults: the package's defaults).
        api_keys: accepted keys (``X-API-Key`` or ``Authorization: Bearer``); never on the command line.
        require_api_key: "auto" (required unless ``host`` is loopback), "yes" or "no" (only with loopback, or
            explicitly for a server behind an authenticating proxy).
        max_body_bytes: largest request body (413 past it).
        max_pixels: largest decoded image (413 past it).
        max_in_flight: requests admitted at once, computing or waiting for a compute thread; past it a request is
            answered 503 at once, before its body is read.
        compute_threads: images estimated in parallel (each on one onnxruntime thread).
        request_timeout: seconds a request may wait and compute before it is answered 503.
        body_timeout: seconds a client may take to send its body (slow senders get 408).
        workers: server processes, each loading the model once.
        page: serve the web page at ``/``.
        access_log: log each request's method, path and status (never bodies; off by default: client addresses
            are personal data).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = DEFAULT_MODEL
    detector: str = DEFAULT_DETECTOR
    min_face_size: int = 24
    minor_age: int = 18
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    require_api_key: str = "auto"
    max_body_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_in_flight: int = 64
    compute_threads: int = 0
    request_timeout: float = 30.0
    body_timeout: float = 15.0
    workers: int = 1
    page: bool = True
    access_log: bool = False

    def __post_init__(self) -> None:
        owner = "ServiceConfig"
        check_number(self.port, "port", owner, lo=0, hi=65535, integer=True)
        check_number(self.max_body_bytes, "max_body_bytes", owner, lo=1024, integer=True)
        check_number(self.max_pixels, "max_pixels", owner, lo=1, integer=True)
        check_number(self.max_in_flight, "max_in_flight", owner, lo=1, hi=100_000, integer=True)
        check_number(self.compute_threads, "compute_threads", owner, lo=0, hi=1024, integer=True)
        check_number(self.request_timeout, "request_timeout", owner, lo=0.0, lo_open=True)
        check_number(self.body_timeout, "body_timeout", owner, lo=0.0, lo_open=True)
        check_number(self.workers, "workers", owner, lo=1, hi=256, integer=True)
        if self.require_api_key not in ("auto", "yes", "no"):
            raise ConfigError(f"The 'require_api_key' parameter of {owner} must be 'auto', 'yes' or 'no'. "
                              f"Got {self.require_api_key!r}.")
        if any(not k or len(k) < 16 or any(c.isspace() for c in k) for k in self.api_keys):
            raise ConfigError("API keys must be at least 16 characters without spaces (e.g. `python -c \"import "
                              "secrets; print(secrets.token_urlsafe(32))\"`).")
        if self.keys_required and not self.api_keys:
            where = f"(--api-key-file, one per line) or in {ENV_KEYS}"
            if self.require_api_key == "yes":
                other = "; or, to serve this machine only without keys, leave --require-api-key at auto" \
                    if is_loopback(self.host) else ""
                raise ConfigError(f"A server started with --require-api-key yes needs API keys: put them in a file "
                                  f"{where}{other}.")
            raise ConfigError(f"A server listening on {self.host}, beyond this machine, needs API keys: put them in a "
                              f"file {where}; or listen on 127.0.0.1 (this machine only).")

    @property
    def keys_required(self) -> bool:
        return self.require_api_key == "yes" or (self.require_api_key == "auto" and not is_loopback(self.host))

    @property
    def threads(self) -> int:
        """Compute threads in use (``compute_threads``, or the CPUs this process may use)."""
        if self.compute_threads:
            return self.compute_threads
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> "ServiceConfig":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        data["api_keys"] = tuple(data.get("api_keys", ()))
        return cls(**{k: v for k, v in data.items() if k in known})


def read_api_keys(path: str | None) -> tuple[str, ...]:
    """API keys from a file (UTF-8, with or without a byte-order mark; one per line; blank lines and ``#`` comments
    ignored), or from :data:`ENV_KEYS`. A file that holds no key is an error: naming a key file means keys are
    wanted, and an empty one must not turn authentication off."""
    if path:
        try:
            with open(path, encoding="utf-8-sig") as fh:  # -sig: an editor's BOM is not part of the first key
                lines = fh.read().splitlines()
        except OSError as exc:
            raise ConfigError(f"--api-key-file {path}: {exc.strerror or exc}.") from None
        except UnicodeDecodeError:
            raise InputError(f"--api-key-file {path} is not UTF-8 text: write one key per line.") from None
        keys = tuple(k.strip() for k in lines if k.strip() and not k.strip().startswith("#"))
        if not keys:
            raise InputError(f"--api-key-file {path} holds no API key (only blank lines or # comments): write one "
                             "key per line (e.g. `python -c \"import secrets; print(secrets.token_urlsafe(32))\" >> "
                             f"{path}`), or leave --api-key-file out.")
        return keys
    return tuple(k.strip() for k in os.environ.get(ENV_KEYS, "").split(",") if k.strip())
