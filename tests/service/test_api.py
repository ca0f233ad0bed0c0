"""The HTTP API on a real server: the CLI's result schema, age-check decisions, API keys, limits, timeouts, a
concurrency limit with fast 503s, and the malformed-request suite (4xx, never a 500)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from agescan.privacy import list_privacy_ops
from agescan.results import to_dict
from agescan.service.config import ServiceConfig
from tests.service.conftest import ThreadServer, free_port, malformed_requests, send_case, send_raw

KEY = "k" * 12 + "-test-key-0001"


@pytest.fixture(scope="module")
def server():
    with ThreadServer(ServiceConfig(port=free_port(), max_in_flight=64)) as s:
        yield s


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_estimate_is_the_clis_result_record(server, estimator, astronaut_path):
    data = astronaut_path.read_bytes()
    r = httpx.post(server.url + "/v1/estimate?distribution=true", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    got, want = r.json(), to_dict(estimator.predict(astronaut_path))
    assert got["schema"] == want["schema"] == "agescan.result/4"
    assert set(got) == set(want) and set(got["faces"][0]) == set(want["faces"][0])
    assert got["faces"] == want["faces"]  # the same pipeline, the same numbers
    assert got["provenance"] == want["provenance"]
    # by default the server returns no hash of the image and no face crop
    assert (got["source"], got["sha256"], got["pdq"], got["pdq_quality"]) == ("<upload>", "", "", 0)
    assert "crop" not in got["faces"][0]
    r = httpx.post(server.url + "/v1/estimate?hashes=true&crops=true", files={"image": ("a.png", data, "image/png")})
    rec = r.json()
    assert rec["sha256"] == hashlib.sha256(data).hexdigest() and len(rec["pdq"]) == 64
    assert "distribution" not in rec["faces"][0]
    crop = Image.open(io.BytesIO(base64.b64decode(rec["faces"][0]["crop"].split(",", 1)[1])))
    assert crop.size == (estimator.card.crop.size,) * 2


def test_server_side_anonymisation_before_the_model(server, astronaut_path):
    data = astronaut_path.read_bytes()
    ct = {"content-type": "image/png"}
    plain = httpx.post(server.url + "/v1/estimate?crops=true", content=data, headers=ct).json()["faces"][0]
    banded = httpx.post(server.url + "/v1/estimate?crops=true&anonymise=eye-band", content=data, headers=ct).json()
    face = banded["faces"][0]
    assert face["box"] == plain["box"] and face["age"] != plain["age"]
    crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(face["crop"].split(",", 1)[1]))))
    s = crop.shape[0]
    assert crop[int(0.25 * s):int(0.33 * s), int(0.35 * s):int(0.65 * s)].max() == 0  # the model saw the band


def test_age_check_decisions_and_their_reasons(server, astronaut, astronaut_path):
    url = server.url + "/v1/age-check"
    ct = {"content-type": "image/jpeg"}
    r = httpx.post(url + "?threshold=18", content=astronaut_path.read_bytes(), headers={"content-type": "image/png"})
    body = r.json()
    assert r.status_code == 200 and body["schema"] == "agescan.age-check/1" and body["faces"] == 1
    assert body["decision"] in ("pass", "refer", "fail") and 0 <= body["p_under"] <= 1 and body["age"] > 0
    assert body["model"]["id"] and len(body["model"]["sha256"]) == 64 and body["threshold"] == 18
    # no face, several faces, a face too small to judge: refer, each with its reason and no estimate
    blank = _jpeg(np.full((300, 400, 3), 120, np.uint8))
    two = _jpeg(np.concatenate([astronaut, astronaut], axis=1))
    small = _jpeg(np.asarray(Image.fromarray(astronaut).resize((128, 128))))
    for img, reason in ((blank, "no_face"), (two, "several_faces"), (small, "poor_quality")):
        b = httpx.post(url + "?threshold=18", content=img, headers=ct).json()
        assert (b["decision"], b["reason"], b["p_under"], b["age"]) == ("refer", reason, None, None), b
    # a challenge age of 99: nobody looks that old, so the adult is referred (never passed)
    b = httpx.post(url + "?threshold=13&challenge_age=99", content=astronaut_path.read_bytes(),
                   headers={"content-type": "image/png"}).json()
    assert b["decision"] == "refer" and b["reason"] in ("under_challenge_age", "uncertain")
    # with a face anonymised server-side, the card's max_error for that transform decides (given: the request's)
    from agescan import AgeEstimator

    png = {"content-type": "image/png"}
    for op in ("", "eye-mosaic", "eye-band"):
        b = httpx.post(url + "?threshold=18" + (f"&anonymise={op}" if op else ""), content=astronaut_path.read_bytes(),
                       headers=png).json()
        assert b["policy"]["max_error"] == AgeEstimator(condition=op).max_error, (op, b["policy"])
    assert AgeEstimator(condition="eye-mosaic").max_error != AgeEstimator().max_error
    b = httpx.post(url + "?threshold=18&anonymise=eye-mosaic&max_error=0.03", content=astronaut_path.read_bytes(),
                   headers=png).json()
    assert b["policy"]["max_error"] == 0.03


def test_age_check_of_real_faces_never_passes_a_young_child(server, utkface_faces):
    import cv2

    from agescan import read_image

    url = server.url + "/v1/age-check?threshold=18"
    for path, age in utkface_faces:
        img = cv2.copyMakeBorder(read_image(path), 60, 60, 60, 60, cv2.BORDER_REPLICATE)
        b = httpx.post(url, content=_jpeg(img), headers={"content-type": "image/jpeg"}).json()
        if age <= 12:
            assert b["decision"] != "pass", (age, b)


def test_the_given_faces_are_estimated_instead_of_detecting(server, estimator, astronaut_path):
    from agescan.privacy import anonymise

    clean = estimator.predict(astronaut_path)
    banded = anonymise(np.asarray(Image.open(astronaut_path).convert("RGB")), clean.faces, "eye-band")
    faces = [{"box": list(f.box.as_tuple()), "landmarks": [list(p) for p in f.landmarks.points]} for f in clean.faces]
    png = io.BytesIO()
    Image.fromarray(banded).save(png, "PNG")
    r = httpx.post(server.url + "/v1/age-check?threshold=18",
                   files={"image": ("p.png", png.getvalue(), "image/png"), "faces": (None, json.dumps(faces))})
    b = r.json()
    assert r.status_code == 200 and b["detector"] == "given" and b["face"]["box"] == [round(v, 1) for v in faces[0]["box"]]
    expected = estimator.predict(banded, faces=[__import__("agescan").types.Detection(f.box, f.landmarks, 1.0)
                                                for f in clean.faces]).faces[0]
    assert abs(b["age"] - expected.age) < 0.01


def _given(face: dict, score: str | None = None) -> str:
    """A 'faces' field as raw JSON text (so that JSON's NaN and Infinity can be written)."""
    text = json.dumps([face])
    return text if score is None else text[:-2] + f', "score": {score}}}]'


@pytest.mark.parametrize("path", ["/v1/estimate", "/v1/age-check?threshold=18"])
def test_malformed_given_faces_are_refused_with_422_naming_the_problem(server, estimator, astronaut_path, path):
    found = estimator.predict(astronaut_path).faces[0]
    box, lms = list(found.box.as_tuple()), [list(p) for p in found.landmarks.points]
    good = {"box": box, "landmarks": lms}
    x1, y1 = box[0], box[1]
    cases = {  # the faces field -> what the message must say
        _given(good, "NaN"): "face 1: 'score' must be a finite number in [0, 1]; got NaN",
        _given(good, "Infinity"): "'score' must be a finite number in [0, 1]; got Infinity",
        _given(good, "-Infinity"): "'score' must be a finite number in [0, 1]; got -Infinity",
        _given(good, "1e309"): "'score' must be a finite number in [0, 1]; got Infinity",
        _given(good, "2.5"): "'score' must be a finite number in [0, 1]; got 2.5",
        _given(good, "null"): "'score' must be a finite number in [0, 1]; got null",
        _given(good, "true"): "'score' must be a finite number in [0, 1]; got true",
        json.dumps([good]).replace(str(box[2]), "1e309"): "'box' must be 4 finite numbers",
        json.dumps([good]).replace(str(box[2]), "NaN"): "'box' must be 4 finite numbers",
        json.dumps([good]).replace(str(box[2]), "1" + "0" * 400): "'box' must be 4 finite numbers",
        json.dumps([good]).replace(str(lms[2][0]), "-Infinity"): "landmark 3 must be 2 finite numbers",
        json.dumps([good]).replace(str(lms[2][0]), "-1e400"): "landmark 3 must be 2 finite numbers",
        _given({**good, "box": [x1, y1, x1, y1]}): "has no area",
        _given({**good, "box": [box[2], y1, x1, box[3]]}): "has no area",
        _given({**good, "landmarks": [[1e6, 1e6]] * 5}): "landmark 1 [1000000.0, 1000000.0] is far outside the box",
        _given({**good, "landmarks": lms[:4]}): "list of 5 [x, y] points",
        _given({**good, "scor": 0.9}): "unknown key 'scor'",
        _given({"landmarks": lms}): "face 1 has no 'box'",
        json.dumps([good, "face"]): "face 2 is not an object",
        '{"box": [1, 2, 3, 4]}': "not a list of faces",
    }
    for field, wanted in cases.items():
        r = httpx.post(server.url + path, files={"image": ("a.png", astronaut_path.read_bytes(), "image/png"),
                                                 "faces": (None, field)})
        err = r.json().get("error", {})
        assert (r.status_code, err.get("code")) == (422, "bad_faces"), (field, r.status_code, r.text)
        assert wanted in err["message"] and "Send a JSON list" in err["message"], (field, err["message"])
    # a real detector puts the landmarks of turned and small faces outside its box: within a box side that is a face
    side = box[3] - box[1]
    shifted = {"box": [x1, y1 + 0.6 * side, box[2], box[3] + 0.6 * side], "landmarks": lms}
    assert min(p[1] for p in lms) < shifted["box"][1]
    r = httpx.post(server.url + path, files={"image": ("a.png", astronaut_path.read_bytes(), "image/png"),
                                             "faces": (None, _given(shifted, "0.5"))})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/v1/estimate", "/v1/age-check?threshold=18"])
def test_a_deeply_nested_faces_field_is_a_422(server, astronaut_jpeg, path):
    # 10 KB that json.loads gives up on with a RecursionError; a face needs four levels
    for depth in (5000, 100_000):
        for field in ("[" * depth + "]" * depth, '[{"box": ' + "[" * depth + "]" * depth + "}]"):
            r = httpx.post(server.url + path, files={"image": ("a.jpg", astronaut_jpeg, "image/jpeg"),
                                                     "faces": (None, field)})
            err = r.json().get("error", {})
            assert (r.status_code, err.get("code")) == (422, "bad_faces"), (depth, r.status_code, r.text[:300])
            assert "nested too deeply" in err["message"], err["message"]
    # nested a little less, so that it parses: still a 422 saying what is wrong
    field = '[{"box": ' + "[" * 500 + "]" * 500 + ', "landmarks": []}]'
    r = httpx.post(server.url + path, files={"image": ("a.jpg", astronaut_jpeg, "image/jpeg"), "faces": (None, field)})
    assert r.status_code == 422 and "'box' must be 4 numbers" in r.json()["error"]["message"], r.text[:300]


def test_unknown_and_repeated_query_parameters_are_refused(server, astronaut_jpeg):
    spec = httpx.get(server.url + "/openapi.json").json()["paths"]
    accepted = {path: [p["name"] for p in spec[path]["post"]["parameters"]]
                for path in ("/v1/estimate", "/v1/age-check")}
    assert accepted["/v1/age-check"] == ["threshold", "challenge_age", "max_error", "anonymise"]
    img = {"content-type": "image/jpeg"}
    for query, name, hint in (("/v1/age-check?threshold=18&anonymize=eye-mosaic", "anonymize", "anonymise"),
                              ("/v1/age-check?threshold=18&transform=eye-mosaic", "transform", "anonymise"),
                              ("/v1/estimate?anonymize=eye-mosaic", "anonymize", "anonymise"),
                              ("/v1/estimate?transform=eye-band", "transform", "anonymise"),
                              ("/v1/age-check?thresold=18", "thresold", "threshold"),
                              ("/v1/estimate?crop=true", "crop", "crops"),
                              ("/v1/estimate?api_key=secret", "api_key", None)):
        r = httpx.post(server.url + query, content=astronaut_jpeg, headers=img)
        err = r.json().get("error", {})
        assert (r.status_code, err.get("code")) == (400, "unknown_parameter"), (query, r.status_code, r.text[:300])
        path = query.split("?")[0]
        assert f"Unknown query parameter {name!r}" in err["message"], err["message"]
        assert f"{path} accepts {', '.join(accepted[path])}" in err["message"], err["message"]
        assert (f"did you mean {hint!r}" in err["message"]) if hint else "did you mean" not in err["message"]
    for query, name in (("/v1/age-check?threshold=18&threshold=21", "threshold"),
                        ("/v1/age-check?threshold=18&anonymise=eye-band&anonymise=eye-mosaic", "anonymise"),
                        ("/v1/estimate?distribution=true&distribution=false", "distribution")):
        r = httpx.post(server.url + query, content=astronaut_jpeg, headers=img)
        err = r.json().get("error", {})
        assert (r.status_code, err.get("code")) == (400, "repeated_parameter"), (query, r.status_code, r.text[:300])
        assert f"{name!r} is given more than once" in err["message"], err["message"]
    # the accepted parameters still work, alone and together
    ok = httpx.post(server.url + "/v1/age-check?threshold=18&challenge_age=0&max_error=0.02&anonymise=eye-band",
                    content=astronaut_jpeg, headers=img)
    assert ok.status_code == 200 and ok.json()["anonymised"] == "eye-band", ok.text[:300]
    ok = httpx.post(server.url + "/v1/estimate?distribution=true&crops=false&hashes=false&anonymise=",
                    content=astronaut_jpeg, headers=img)
    assert ok.status_code == 200, ok.text[:300]


def test_models_health_docs_and_headers(server):
    m = httpx.get(server.url + "/v1/models").json()
    assert m["model"]["id"] and m["detector"]["name"] and m["privacy_ops"] == list_privacy_ops(keyless=True)
    browser = m["browser_detector"]
    assert browser["name"] == m["detector"]["name"] and not m["api_key_required"]  # the page runs the server's
    for i, member in enumerate(browser["members"]):
        data = httpx.get(server.url + member["url"]).content
        assert member["url"] == f"/v1/browser-detector/{i}.onnx" and hashlib.sha256(data).hexdigest() == member["sha256"]
    assert httpx.get(server.url + f"/v1/browser-detector/{len(browser['members'])}.onnx").status_code == 404
    h = httpx.get(server.url + "/healthz")
    assert h.json()["status"] == "ok" and h.headers["cache-control"] == "no-store"
    assert h.headers["x-content-type-options"] == "nosniff" and "server" not in h.headers
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/estimate", "/v1/age-check", "/v1/models", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/age-check"]["post"]["requestBody"]["content"]
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "/v1/age-check" in docs.text and "<script" not in docs.text
    page = httpx.get(server.url + "/")
    assert "script-src 'self'" in page.headers["content-security-policy"] and "http" not in page.text.split("<main>")[0]


def test_malformed_requests_get_4xx_never_500(server, astronaut_jpeg):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        statuses = {case[0]: send_case(client, server.port, case) for case in malformed_requests(astronaut_jpeg)}
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    assert statuses["body over the limit"] == statuses["Content-Length of 1 GB"] == 413
    assert statuses["PNG bomb 100000x100000"] == 413 and statuses["truncated JPEG"] == 422
    assert statuses["text/plain"] == statuses["no content type"] == 415
    assert statuses["zip bomb as upload"] == 422 and statuses["wrong method"] == 405
    assert httpx.get(server.url + "/healthz").json()["in_flight"] == 0  # every admission was released


def test_errors_are_structured_json(server):
    r = httpx.post(server.url + "/v1/age-check?threshold=18", content=b"not an image",
                   headers={"content-type": "image/jpeg"})
    err = r.json()["error"]
    assert r.status_code == 422 and err["status"] == 422 and err["code"] == "bad_image"
    assert "not a recognised image format" in err["message"]


def test_api_keys():
    cfg = ServiceConfig(host="127.0.0.1", port=free_port(), api_keys=(KEY,), require_api_key="yes")
    with ThreadServer(cfg) as s:
        url = s.url + "/v1/age-check?threshold=18"
        img = {"content-type": "image/jpeg"}
        assert httpx.post(url, content=b"x", headers=img).json()["error"]["code"] == "api_key_missing"
        # the key is checked before anything else: a request without it learns nothing about its parameters
        assert httpx.post(s.url + "/v1/age-check?threshold=abc", content=b"x", headers=img).status_code == 401
        assert httpx.post(s.url + "/v1/age-check?threshold=18&nope=1", content=b"x", headers=img).status_code == 401
        bad = httpx.post(url, content=b"x", headers={**img, "x-api-key": "wrong" * 5})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        ok = httpx.post(url, content=b"x", headers={**img, "authorization": f"Bearer {KEY}"})
        assert ok.status_code == 422  # past the key: the body is not an image
        assert httpx.get(s.url + "/v1/models").json()["api_key_required"] is True
    with pytest.raises(Exception, match="needs API keys"):
        ServiceConfig(host="0.0.0.0")
    with pytest.raises(Exception, match="at least 16 characters"):
        ServiceConfig(api_keys=("short",))
    assert ServiceConfig(host="0.0.0.0", api_keys=(KEY,)).keys_required


def test_slow_senders_and_slow_requests_are_cut_off(astronaut_jpeg):
    with ThreadServer(ServiceConfig(port=free_port(), body_timeout=1.0)) as s:
        t0 = time.time()
        raw = send_raw(s.port, b"POST /v1/estimate HTTP/1.1\r\nhost: x\r\ncontent-type: image/jpeg\r\n"
                               b"content-length: 100000\r\n\r\n" + astronaut_jpeg[:100], timeout=20)
        assert raw.startswith(b"HTTP/1.1 408") and time.time() - t0 < 5
    with ThreadServer(ServiceConfig(port=free_port(), request_timeout=0.005)) as s:
        r = httpx.post(s.url + "/v1/estimate", content=astronaut_jpeg, headers={"content-type": "image/jpeg"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "timeout" and r.headers["retry-after"]


def test_past_the_concurrency_limit_requests_get_fast_503s(astronaut_jpeg):
    cfg = ServiceConfig(port=free_port(), max_in_flight=2, compute_threads=1)

    async def flood(url: str, n: int) -> list[tuple[int, float]]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n)) as client:
            async def one():
                t0 = time.perf_counter()
                r = await client.post(url, content=astronaut_jpeg, headers={"content-type": "image/jpeg"})
                return r.status_code, time.perf_counter() - t0
            return await asyncio.gather(*(one() for _ in range(n)))

    with ThreadServer(cfg) as s:
        out = asyncio.run(flood(s.url + "/v1/age-check?threshold=18", 24))
        ok = [t for code, t in out if code == 200]
        busy = [t for code, t in out if code == 503]
        assert len(ok) + len(busy) == 24 and len(ok) >= 2 and len(busy) >= 10, out
        assert max(busy) < min(max(ok), 1.0)  # refused at once, long before the admitted ones finish
        h = httpx.get(s.url + "/healthz").json()
        assert h["refused"] == len(busy) and h["in_flight"] == 0
        # and it still serves normally afterwards
        assert httpx.post(s.url + "/v1/age-check?threshold=18", content=astronaut_jpeg,
                          headers={"content-type": "image/jpeg"}).status_code == 200


def test_serve_refuses_to_listen_beyond_loopback_without_keys(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "agescan", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 3 and "needs API keys" in out.stderr
    keys = tmp_path / "keys"
    keys.write_text("# one per line\nshort\n")
    out = subprocess.run([sys.executable, "-m", "agescan", "serve", "--api-key-file", str(keys)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 3 and "at least 16 characters" in out.stderr
    help_text = subprocess.run([sys.executable, "-m", "agescan", "serve", "--help"], capture_output=True, text=True).stdout
    for option in ("--api-key-file", "--max-in-flight", "--max-body-mb", "--request-timeout", "--workers", "exit codes"):
        assert option in help_text


def test_an_api_key_file_without_a_key_is_a_startup_error(tmp_path):
    import subprocess
    import sys

    for name, text in (("empty", ""), ("comments", "# keys go here\n\n   \n# one per line\n"), ("bom", "\ufeff\n")):
        keys = tmp_path / name
        keys.write_text(text, encoding="utf-8")
        out = subprocess.run([sys.executable, "-m", "agescan", "serve", "--port", str(free_port()),
                              "--api-key-file", str(keys)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, (name, out.returncode, out.stderr[-2000:])
        assert f"--api-key-file {keys} holds no API key" in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert "serve: http://" not in out.stderr  # it never said it was serving


def test_an_api_key_file_saved_with_a_bom_keeps_its_first_key(tmp_path):
    from tests.service.conftest import serve_subprocess

    keys = tmp_path / "keys.txt"
    keys.write_bytes("\ufeff".encode() + f"{KEY}\r\n# the second\r\n{KEY[::-1]}\r\n".encode())
    from agescan.service import read_api_keys

    assert read_api_keys(str(keys)) == (KEY, KEY[::-1])
    proc, url = serve_subprocess("--api-key-file", str(keys))
    try:
        img = {"content-type": "image/jpeg"}
        for key in (KEY, KEY[::-1]):
            r = httpx.post(url + "/v1/age-check?threshold=18", content=b"x", headers={**img, "x-api-key": key})
            assert r.status_code == 422, r.text  # past the key: the body is not an image
        assert httpx.post(url + "/v1/age-check?threshold=18", content=b"x", headers=img).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("args, code, message", [
    (["--model", "nope"], 3, "No model named 'nope' is registered"),
    (["--model", "nope", "--workers", "2"], 3, "No model named 'nope' is registered"),
    (["--detector", "nope"], 3, "'nope'"),
    (["--min-face-size", "2"], 2, "'min_face_size' parameter of AgeEstimator must be an integer in [12, inf]. Got 2"),
    (["--require-api-key", "yes"], 3, "started with --require-api-key yes needs API keys"),
])
def test_serve_startup_errors_are_one_line_before_the_banner(args, code, message):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "agescan", "serve", "--port", str(free_port()), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == code, (args, out.returncode, out.stderr[-3000:])
    assert out.stderr.startswith("agescan serve: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr[-3000:]
    assert message in out.stderr and "serve: http://" not in out.stderr, out.stderr
    assert "not loopback" not in out.stderr and "listen on 127.0.0.1" not in out.stderr  # it listens there already


def test_the_browser_runs_every_operator_of_every_yunet_detector():
    onnx = pytest.importorskip("onnx", reason="onnx (train extra) reads the graphs")
    from agescan.detect import YuNetDetector, create_detector, list_detectors
    from agescan.service.page import BROWSER_OPS

    checked = 0
    for name in list_detectors():
        det = create_detector(name)
        if isinstance(det, YuNetDetector):
            ops = {n.op_type for n in onnx.load(str(det.path)).graph.node}
            assert ops <= BROWSER_OPS, (name, ops - BROWSER_OPS)
            checked += 1
    assert checked >= 1
