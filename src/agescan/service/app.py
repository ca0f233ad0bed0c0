"""``agescan serve``: the HTTP API and the privacy-first web page, a thin adapter over :class:`agescan.AgeEstimator`.

Endpoints (OpenAPI at ``/openapi.json``, readable at ``/docs``):
    POST /v1/estimate    an image -> the versioned result record of the CLI (agescan.result/4)
    POST /v1/age-check   an image + threshold [+ challenge_age] -> pass / fail / refer (agescan.age-check/1)
    GET  /v1/models      the model, detector, privacy ops and age-check policy in use
    GET  /healthz        liveness and load
    GET  /               the web page (anonymises in the browser before anything is uploaded)

Privacy: an image lives in memory for the request only. Bodies are read into memory (multipart too, never spooled
to disk), decoded, estimated and dropped; nothing about a request is logged (the access log is off unless asked
for, and never holds bodies); responses carry no face crop (unless ``crops=true``), and no file or perceptual hash
of the image (unless ``hashes=true``).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

from agescan import __version__
from agescan.agecheck import AgeCheckPolicy
from agescan.errors import DecodeError, InputError, TooManyPixelsError
from agescan.io import load_image
from agescan.privacy import list_privacy_ops
from agescan.results import to_dict
from agescan.service.config import ENV_CONFIG, ServiceConfig
from agescan.service.faces import parse_faces
from agescan.service.http import (Admission, SecurityHeaders, ServiceError, check_api_key, json_bytes, parse_upload,
                                  read_body)
from agescan.service.params import check_query

log = logging.getLogger("agescan.service")

_STATIC = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
#: The page runs only its own script and style; it may use the camera and talk to this server only.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "media-src 'self' blob: mediastream:; connect-src 'self' blob:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")

_IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "the photo (JPEG, PNG, WebP, ...)"},
        "faces": {"type": "string", "description": "optional JSON list of the faces already found in the photo, "
                                                   "[{\"box\": [x1, y1, x2, y2], \"landmarks\": [[x, y] x 5], "
                                                   "\"score\": 0..1 (optional)}] (eyes, nose, mouth corners, as "
                                                   "seen; finite numbers, a box with area, landmarks near their "
                                                   "box): they are estimated instead of detecting again"}}}}}}}
_ERRORS = {status: {"description": text, "content": {"application/json": {"schema": {"type": "object", "properties": {
    "error": {"type": "object", "properties": {"status": {"type": "integer"}, "code": {"type": "string"},
                                               "message": {"type": "string"}}}}}}}}
    for status, text in ((400, "malformed request, or an unknown or repeated query parameter"),
                         (401, "API key missing or invalid"), (408, "body too slow"),
                         (413, "body or image too large"), (415, "unsupported content type"),
                         (422, "undecodable image or invalid parameter"), (503, "busy or timed out: retry"))}


class _Service:
    """What one worker process holds: the configuration, one loaded estimator (and its per-privacy-op variants,
    sharing the loaded model), the compute threads and the admission counter."""

    def __init__(self, config: ServiceConfig, estimator=None):
        self.config = config
        self.estimator = (estimator or _new_estimator(config)).load()
        self.variants = {op: self.estimator.replace(anonymise=op) for op in list_privacy_ops(keyless=True)}
        self.executor = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="agescan-compute")
        self.admission = Admission(config.max_in_flight)
        self.started = time.time()
        self.served = 0
        from agescan.service.page import browser_detector

        self.browser = browser_detector(config.detector) if config.page else None

    def warm_up(self) -> None:
        """One estimate on a synthetic image, so the first request does not pay for lazy initialisation."""
        self.estimator.predict(np.full((64, 64, 3), 128, np.uint8))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def load_estimator(config: ServiceConfig):
    """The configuration's estimator, loaded (weights read and sha256-checked), and, when the page is served, its
    detector found: what :func:`agescan.service.serve` does before the server starts, so that an unknown model or a
    bad value fails with its own error (ModelNotFoundError, InputError, ConfigError), not as a failed start-up."""
    estimator = _new_estimator(config).load()
    if config.page:
        from agescan.service.page import browser_detector

        browser_detector(config.detector)
    return estimator


def _new_estimator(config: ServiceConfig):
    from agescan import AgeEstimator

    return AgeEstimator(config.model, config.detector, min_face_size=config.min_face_size,
                        minor_age=config.minor_age, max_pixels=config.max_pixels, threads=1)


def _error(exc: ServiceError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def create_app(config: ServiceConfig | None = None, estimator=None) -> FastAPI:
    """The ASGI application of ``agescan serve`` (one per worker process; the model is loaded at startup)."""
    config = config or ServiceConfig()
    # python-multipart logs what it finds wrong in a malformed body; the client gets the error, the logs stay empty
    logging.getLogger("python_multipart").setLevel(logging.ERROR)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = _Service(config, estimator)
        await asyncio.get_running_loop().run_in_executor(svc.executor, svc.warm_up)
        app.state.svc = svc
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(title="agescan", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Age estimation and age checks from face images. Images are held in memory for the "
                              "request only; nothing is written to disk or logged.")

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                             for e in exc.errors())
        return _error(ServiceError(422, "bad_parameter", problems[:500]))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(ServiceError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):  # a bug, never a bad input: say so, log no content
        log.error("internal error on %s: %s", request.url.path, type(exc).__name__)
        return _error(ServiceError(500, "internal", "Internal error."))

    async def _run(request: Request, fn) -> Any:
        """Admit the request (503 at once past the limit), read its upload into memory, and run
        ``fn(image_bytes, given_faces)`` on a compute thread; 503 when the request's deadline passes first. The
        admission slot is held until the computation really ends, so a timed-out request still counts."""
        svc: _Service = request.app.state.svc
        svc.admission.enter()
        deadline = time.monotonic() + config.request_timeout
        fut = None
        try:
            body = await read_body(request, config.max_body_bytes, min(config.body_timeout, config.request_timeout))
            upload = parse_upload(request.headers.get("content-type", ""), body)
            faces = parse_faces(upload.faces_json)
            fut = asyncio.get_running_loop().run_in_executor(svc.executor, fn, upload.image, faces)
            fut.add_done_callback(lambda _: svc.admission.leave())
            return await asyncio.wait_for(asyncio.shield(fut), max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            raise ServiceError(503, "timeout", f"The request did not finish within {config.request_timeout:g} s; "
                                               "retry later.", {"Retry-After": "2"}) from None
        finally:
            if fut is None:
                svc.admission.leave()

    async def _key(request: Request) -> None:
        """A dependency: the API key is checked before anything else about a request (even its parameters)."""
        check_api_key(request, config.api_keys)

    async def _query(request: Request) -> None:
        """A dependency, after the key: the query holds only the endpoint's own parameters, each once."""
        route = request.scope["route"]
        check_query(request.query_params.multi_items(), [p.alias for p in route.dependant.query_params], route.path)

    guarded = {"dependencies": [Depends(_key), Depends(_query)], "openapi_extra": _IMAGE_BODY, "responses": _ERRORS}

    def _estimator(svc: _Service, anonymise: str | None):
        if not anonymise:
            return svc.estimator
        if anonymise not in svc.variants:
            raise ServiceError(422, "bad_parameter", f"anonymise: unknown privacy op {anonymise!r}; known: "
                                                     f"{', '.join(svc.variants)}.")
        return svc.variants[anonymise]

    @app.post("/v1/estimate", **guarded, summary="Estimate the age of every face in an image (the CLI's result record)")
    async def estimate(request: Request,
                       distribution: Annotated[bool, Query(description="include each face's age distribution")] = False,
                       crops: Annotated[bool, Query(description="include each face crop the model saw (aligned, or "
                                                                "framed from its box for a profile; PNG data URI); "
                                                                "off by default")] = False,
                       hashes: Annotated[bool, Query(description="include the image's sha256 and PDQ hashes; off "
                                                                 "by default")] = False,
                       anonymise: Annotated[str | None, Query(description="a privacy op applied to each face "
                                                                          "before the model (GET /v1/models lists "
                                                                          "them)")] = None):
        """The image in the body (``image/*``) or as the ``image`` field of ``multipart/form-data``, with an
        optional ``faces`` field. Returns the versioned result record (schema ``agescan.result/4``)."""
        svc: _Service = request.app.state.svc
        est = _estimator(svc, anonymise)
        record = await _run(request, lambda data, faces: _estimate(est, data, faces, distribution, crops, hashes))
        svc.served += 1
        return Response(json_bytes(record), media_type="application/json")

    @app.post("/v1/age-check", **guarded, summary="Check a person's age against a threshold: pass, fail or refer")
    async def age_check(request: Request,
                        threshold: Annotated[int, Query(ge=1, le=100, description="the age to check against "
                                                                                  "(13, 16, 18, ...)")],
                        challenge_age: Annotated[float, Query(ge=0, le=100, description="also require a point age "
                                                              "of at least this to pass (0 = off)")] = 0.0,
                        max_error: Annotated[float | None, Query(gt=0, lt=0.5, description="pass (fail) only when "
                                                          "P(under) (P(over)) is at most this (default: the "
                                                          "model card's)")] = None,
                        anonymise: Annotated[str | None, Query(description="a privacy op applied to each face "
                                                                           "before the model")] = None):
        """The image as for ``/v1/estimate``. Returns ``{"decision": "pass" | "fail" | "refer", "reason",
        "message", "p_under", "age", "interval", "faces", "model", ...}`` (schema ``agescan.age-check/1``); no face,
        several faces and a face too small to judge are referred, with their reason."""
        svc: _Service = request.app.state.svc
        est = _estimator(svc, anonymise)  # its card thresholds are those for the transform, where the card has them
        try:
            policy = AgeCheckPolicy(threshold, challenge_age, est.max_error if max_error is None else max_error)
        except InputError as exc:
            raise ServiceError(422, "bad_parameter", str(exc)) from None
        result, faces = await _run(request, lambda data, faces: (_predict(est, data, faces)[0], faces))
        check = policy.decide(result, est.decider)
        p = result.provenance
        svc.served += 1
        return Response(json_bytes({**check.to_dict(), "model": {"id": p.model_id, "sha256": p.model_sha256},
                                    "detector": p.detector_id if faces is None else "given",
                                    "anonymised": anonymise, "agescan_version": p.agescan_version}),
                        media_type="application/json")

    @app.get("/v1/models", summary="The model, detector, privacy ops and defaults in use")
    async def models(request: Request):
        svc: _Service = request.app.state.svc
        est = svc.estimator
        return {"model": {**est.card.to_dict(), "sha256": est.model.sha256}, "detector": est.detector.info(),
                "privacy_ops": list_privacy_ops(keyless=True), "age_check": {"max_error": est.max_error},
                "browser_detector": svc.browser.public() if svc.browser else None,
                "limits": {"max_body_bytes": config.max_body_bytes, "max_pixels": config.max_pixels,
                           "max_in_flight": config.max_in_flight, "request_timeout": config.request_timeout},
                "api_key_required": bool(config.api_keys), "agescan_version": __version__}

    @app.get("/healthz", summary="Liveness and load")
    async def healthz(request: Request):
        svc: _Service = request.app.state.svc
        return {"status": "ok", "in_flight": svc.admission.active, "max_in_flight": svc.admission.limit,
                "refused": svc.admission.refused, "served": svc.served, "uptime_s": round(time.time() - svc.started)}

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        from agescan.service.docs import render

        return HTMLResponse(render(app.openapi()), headers={"Content-Security-Policy": "default-src 'none'; "
                                                                                       "style-src 'unsafe-inline'"})

    if config.page:
        @app.get("/", include_in_schema=False)
        async def page():
            return HTMLResponse(_static("index.html"), headers={"Content-Security-Policy": PAGE_CSP,
                                                                "Permissions-Policy": "camera=(self)"})

        @app.get("/static/{name}", include_in_schema=False)
        async def static(name: str):
            if name not in _STATIC:
                raise ServiceError(404, "not_found", "No such file.")
            return Response(_static(name), media_type=_STATIC[name])

        @app.get("/v1/browser-detector/{index}.onnx", include_in_schema=False)
        async def browser_weights(request: Request, index: int):
            members = request.app.state.svc.browser.members
            if not 0 <= index < len(members):
                raise ServiceError(404, "not_found", "No such detector file.")
            return Response(members[index].data, media_type="application/octet-stream")

    app.add_middleware(SecurityHeaders)
    return app


def _static(name: str) -> bytes:
    return (resources.files("agescan.service") / "static" / name).read_bytes()


def _decode(est, data: bytes):
    """Decode an upload, mapping every failure of a bad image to a 4xx (never a 500)."""
    try:
        return load_image(data, max_pixels=est.max_pixels)
    except TooManyPixelsError as exc:
        raise ServiceError(413, "too_many_pixels", str(exc).replace("<bytes>", "The image")) from None
    except DecodeError as exc:
        raise ServiceError(422, "bad_image", str(exc).replace("<bytes>", "The image")) from None
    except Exception as exc:  # noqa: BLE001  (a decoder's own failure on hostile bytes is still a bad image)
        raise ServiceError(422, "bad_image", f"The image cannot be decoded ({type(exc).__name__}).") from None


def _predict(est, data: bytes, faces):
    loaded = _decode(est, data)
    try:
        result = est.predict(loaded.image, faces=faces)
    except InputError as exc:  # given faces outside the image
        raise ServiceError(422, "bad_faces", str(exc)) from None
    p = dataclasses.replace(result.provenance, source="<upload>", sha256=loaded.sha256)
    return dataclasses.replace(result, provenance=p), loaded.image


def _estimate(est, data: bytes, faces, distribution: bool, crops: bool, hashes: bool) -> dict:
    result, image = _predict(est, data, faces)
    record = to_dict(result, include_distribution=distribution)
    if not hashes:
        record.update(sha256="", pdq="", pdq_mirror="", pdq_quality=0)
    if crops and result.faces:
        from agescan.align import crop_as_framed
        from agescan.privacy import anonymise

        seen = anonymise(image, result.faces, est.anonymise) if est.anonymise else image
        for face, rec in zip(result.faces, record["faces"]):
            rec["crop"] = _png_uri(crop_as_framed(seen, face.landmarks, face.box, face.framing, est.card.crop).image)
    return record


def _png_uri(rgb: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def app_from_env() -> FastAPI:
    """The application of a worker process started by uvicorn (``factory=True``): its configuration comes from
    :data:`agescan.service.config.ENV_CONFIG`."""
    import os

    from agescan.scan import quiet_decoder_logs

    quiet_decoder_logs()
    return create_app(ServiceConfig.from_env(os.environ[ENV_CONFIG]))
