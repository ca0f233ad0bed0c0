"""Corrupt and adversarial input files for fuzzing the whole scan (used by tests and by hand).

    python -m tests.fuzz_corpus /tmp/fuzz 10000     # then: agescan scan /tmp/fuzz --db fuzz.sqlite

Deterministic for a seed. Kinds: mutated images of seven formats (truncated, flipped bytes, zeroed runs,
duplicated/deleted chunks, noise) under right and wrong extensions; PNG headers claiming huge sizes; JPEGs
with malformed EXIF (bad orientation, offsets past the end, endless IFD loops); zip bombs and nested, broken
or hostile archives (path traversal, absolute and empty member names); broken and truncated videos;
empty files and odd names.
"""

from __future__ import annotations

import io
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("mutated", "mutated_wrong_ext", "huge_png", "bad_exif", "archive", "video", "empty", "text_as_image")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header and a tiny IDAT claiming ``width`` x ``height`` pixels (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


def bad_exif_jpeg(base: bytes, rng: np.random.Generator) -> bytes:
    """Insert an APP1 Exif segment with a hostile TIFF structure after the SOI marker."""
    choice = int(rng.integers(0, 4))
    if choice == 0:  # orientation tag with an absurd value
        tiff = b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 60000) + b"\0\0\0\0"
    elif choice == 1:  # IFD offset past the end
        tiff = b"MM\x00*" + struct.pack(">I", 0x7FFFFFF0)
    elif choice == 2:  # an IFD whose next-IFD offset points at itself (a loop)
        tiff = b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 6) + \
            struct.pack("<I", 8)
    else:  # random garbage
        tiff = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
    payload = b"Exif\x00\x00" + tiff
    seg = b"\xff\xe1" + struct.pack(">H", min(len(payload) + 2, 0xFFFF)) + payload
    return base[:2] + seg + base[2:]


def seed_files(seed_image: np.ndarray) -> dict[str, bytes]:
    small = Image.fromarray(seed_image).resize((96, 96))
    out = {}
    for ext, fmt, kw in ((".jpg", "JPEG", {"quality": 90}), (".png", "PNG", {}), (".gif", "GIF", {}),
                         (".bmp", "BMP", {}), (".tif", "TIFF", {}), (".webp", "WEBP", {"quality": 80}),
                         (".jpeg", "JPEG", {"progressive": True})):
        buf = io.BytesIO()
        small.save(buf, format=fmt, **kw)
        out[ext] = buf.getvalue()
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(0, 5)
    if kind == 0:  # truncate
        return bytes(b[: rng.integers(0, len(b))])
    if kind == 1:  # flip random bytes, more often in the header
        for _ in range(rng.integers(1, 20)):
            i = int(rng.integers(0, min(len(b), 200) if rng.random() < 0.7 else len(b)))
            b[i] = int(rng.integers(0, 256))
        return bytes(b)
    if kind == 2:  # overwrite a run with zeros or 0xFF
        i = int(rng.integers(0, len(b)))
        b[i:i + int(rng.integers(1, 64))] = bytes([int(rng.choice([0, 255]))]) * 64
        return bytes(b[: len(data)])
    if kind == 3:  # duplicate or delete a chunk
        i, j = sorted(int(x) for x in rng.integers(0, len(b), 2))
        return bytes(b[:i] + b[i:j] * int(rng.integers(0, 3)) + b[j:])
    return bytes(rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8))  # noise


def _archive(path: Path, seeds: dict[str, bytes], rng: np.random.Generator, bomb: bool) -> Path:
    choice = int(rng.integers(0, 6))
    if bomb:  # a member that inflates past the 512 MB member guard (about 600 KB on disk)
        path = path.with_suffix(".zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            with z.open("bomb.png", "w", force_zip64=True) as fh:
                block = b"\x00" * (1 << 20)
                for _ in range(600):
                    fh.write(block)
        return path
    if choice == 0:  # hostile member names next to a corrupt image
        path = path.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("../../escape.jpg", mutate(seeds[".jpg"], rng))
            z.writestr("/abs/olute.png", mutate(seeds[".png"], rng))
            z.writestr("dir/", b"")
        return path
    if choice == 1:  # a zip inside a zip, and a member that is not an image
        path = path.with_suffix(".zip")
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as z:
            z.writestr("inner.jpg", seeds[".jpg"])
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("nested.zip", inner.getvalue())
            z.writestr("notes.jpg", b"this is text, not a picture\n")
        return path
    if choice == 2:  # a truncated zip
        path = path.with_suffix(".zip")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("a.jpg", seeds[".jpg"])
            z.writestr("b.png", seeds[".png"])
        data = buf.getvalue()
        path.write_bytes(data[: int(rng.integers(10, len(data) - 1))])
        return path
    if choice == 3:  # a tar with a symlink member and a mutated image
        path = path.with_suffix(".tar")
        with tarfile.open(path, "w") as t:
            info = tarfile.TarInfo("link.jpg")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            t.addfile(info)
            data = mutate(seeds[".webp"], rng)
            info = tarfile.TarInfo("m.webp")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        return path
    if choice == 4:  # a corrupt gzip stream named .tar.gz
        path = path.with_name(path.stem + ".tar.gz")
        path.write_bytes(b"\x1f\x8b\x08\x00" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
        return path
    path = path.with_suffix(".zip")  # random bytes behind a zip name
    path.write_bytes(b"PK\x03\x04" + rng.integers(0, 256, int(rng.integers(0, 800)), dtype=np.uint8).tobytes())
    return path


def _video(path: Path, rng: np.random.Generator) -> Path:
    choice = int(rng.integers(0, 3))
    if choice == 0:
        path = path.with_suffix(".mp4")
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, 400, dtype=np.uint8).tobytes())
    elif choice == 1:
        path = path.with_suffix(".avi")
        path.write_bytes(b"RIFF\x00\x10\x00\x00AVI LIST" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    else:
        path = path.with_suffix(".mkv")
        path.write_bytes(b"\x1a\x45\xdf\xa3" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
    return path


def make_corpus(folder: str | Path, n: int, seed: int = 0, seed_image: np.ndarray | None = None,
                bombs: int = 2) -> list[Path]:
    """Write ``n`` adversarial files into ``folder`` (sub-folders of 500); returns their paths."""
    rng = np.random.default_rng(seed)
    if seed_image is None:
        yy, xx = np.mgrid[0:96, 0:96]
        seed_image = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)
    seeds = seed_files(seed_image)
    exts = list(seeds)
    root = Path(folder)
    out = []
    for i in range(n):
        sub = root / f"batch {i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        kind = KINDS[int(rng.choice(len(KINDS), p=[0.55, 0.15, 0.05, 0.08, 0.05, 0.04, 0.03, 0.05]))]
        base = sub / f"{i:05d} {kind} ü"
        if i < bombs:
            path = _archive(base, seeds, rng, bomb=True)
        elif kind == "mutated":
            ext = exts[int(rng.integers(0, len(exts)))]
            path = base.with_suffix(ext)
            path.write_bytes(mutate(seeds[ext], rng))
        elif kind == "mutated_wrong_ext":
            ext, other = rng.choice(exts, 2, replace=False)
            path = base.with_suffix(str(other))
            path.write_bytes(mutate(seeds[str(ext)], rng))
        elif kind == "huge_png":
            side = int(rng.choice([30000, 65000, 2**31 - 1]))
            path = base.with_suffix(str(rng.choice([".png", ".jpg"])))
            path.write_bytes(huge_png(side, side))
        elif kind == "bad_exif":
            path = base.with_suffix(".jpg")
            path.write_bytes(bad_exif_jpeg(seeds[".jpg"], rng))
        elif kind == "archive":
            path = _archive(base, seeds, rng, bomb=False)
        elif kind == "video":
            path = _video(base, rng)
        elif kind == "empty":
            path = base.with_suffix(str(rng.choice([".jpg", ".png", ".zip", ".mp4"])))
            path.write_bytes(b"")
        else:
            path = base.with_suffix(".png")
            path.write_text("<html>not an image</html>\n" * int(rng.integers(1, 50)))
        out.append(path)
    return out


if __name__ == "__main__":
    made = make_corpus(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
    print(f"{len(made)} files in {sys.argv[1]}")
