"""Draw docs/privacy-transforms.jpg: every registered privacy transform on scikit-image's astronaut (public domain).

    PYTHONPATH=src python tools/privacy_figure.py docs/privacy-transforms.jpg

Faces are found by the default pipeline's detector (AgeEstimator.detect); the keyed permutation uses a fixed,
public demonstration key.
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image, ImageDraw


def main(out: str) -> None:
    import importlib.resources as res

    from agescan import AgeEstimator, read_image
    from agescan.privacy import get_transform, list_privacy_ops

    img = read_image(str(res.files("skimage.data") / "astronaut.png"))
    faces = AgeEstimator().load().detect(img)
    (face,) = faces
    x1, y1, x2, y2 = face.box.as_tuple()
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, 0.9 * max(x2 - x1, y2 - y1)
    crop = tuple(int(round(v)) for v in (max(0, cx - half), max(0, cy - half), cx + half, cy + half))
    tiles = [("original", img)]
    tiles += [(n, get_transform(n).apply(img, faces, seed=0, key=b"public demonstration key, 32 b.")) for n in
              list_privacy_ops()]
    side = 220
    sheet = Image.new("RGB", (side * len(tiles), side + 24), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, t) in enumerate(tiles):
        tile = Image.fromarray(np.ascontiguousarray(t)).crop(crop).resize((side, side), Image.LANCZOS)
        sheet.paste(tile, (i * side, 24))
        draw.text((i * side + 6, 6), name, fill="black")
    sheet.save(out, quality=88)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/privacy-transforms.jpg")
