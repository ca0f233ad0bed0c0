"""Anonymise picture files with a registered privacy transform: ``agescan anonymize`` and its Python entry point.

Faces are found by the pipeline's own detection stage (:meth:`agescan.AgeEstimator.detect`), the transform is applied
(:mod:`agescan.privacy`), and a new file is written under the output folder; inputs are never written to, and an
output folder inside an input folder is refused (a second run would otherwise take its own outputs as inputs).

- Pictures are read as :func:`agescan.read_image` reads them: EXIF orientation applied, so the output shows the
  picture the way a viewer shows the input. No metadata is copied (EXIF, GPS, camera serials, ICC profiles, comments
  are all dropped).
- A picture in which no face is found is **not written** (the transform would leave it unchanged, which is no
  anonymisation), unless ``keep_faceless`` says so; whole-picture transforms (the keyed permutation) need no face.
- The keyed permutation and ``decrypt`` write PNG (lossless: one JPEG round would make the permutation
  irreversible); other transforms keep the input's format where Pillow writes it (JPEG at quality 95), else PNG.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from agescan.errors import ConfigError, DecodeError, InputError
from agescan.io import IMAGE_EXTENSIONS, load_image
from agescan.io.video import VIDEO_EXTENSIONS
from agescan.privacy import get_transform
from agescan.privacy.permutation import MIN_KEY_BYTES, TAG_CHUNK, permutation_tag

#: Formats written as the input's (by suffix); every other input is written as PNG.
KEPT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                ".tiff": "TIFF"}


@dataclass
class AnonymizeSummary:
    """What a run did: counts, and one line per file not written (path: reason)."""

    method: str
    decrypt: bool
    files: int = 0
    written: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    outputs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: --decrypt: pictures whose tag shows another key (or changed pixels): not restored
    mismatched: int = 0
    #: --decrypt: pictures restored without a check (no tag: permuted before tags, or their metadata stripped)
    unchecked: list[str] = field(default_factory=list)


def new_key_file(path: str | os.PathLike) -> Path:
    """Write 32 random bytes (256 bits, :mod:`secrets`) to a new file readable by its owner only; refuses to
    replace an existing file (a lost key makes permuted pictures unrecoverable)."""
    path = Path(path)
    if path.exists():
        raise InputError(f"{path}: exists; a key file is never overwritten (its pictures would be lost). "
                         "Choose another name.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InputError(f"--new-key {path}: cannot create it ({exc.strerror or exc}). Name a file in a folder you "
                         "can write.") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    return path


def read_key_file(path: str | os.PathLike) -> bytes:
    """The secret key held in a file (its raw bytes, at least 16)."""
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"--key-file {path}: cannot read it ({exc.strerror or exc}). Create one with "
                         "`agescan anonymize --new-key FILE`.") from None
    if len(key) < MIN_KEY_BYTES:
        raise InputError(f"--key-file {path}: holds {len(key)} bytes; a key needs at least {MIN_KEY_BYTES} random "
                         "bytes. Create one with `agescan anonymize --new-key FILE`.")
    return key


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def plan_outputs(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, png: bool = False
                 ) -> list[tuple[Path, Path | None, str]]:
    """(input file, output file or None, reason when None) for every picture under ``inputs``, in sorted order.

    A folder's pictures keep their relative paths under ``OUT/<folder name>/``; a file goes to ``OUT/<name>``.
    Raises InputError for a missing input or an output folder inside an input folder.
    """
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out_dir} is a file, not a folder: name a folder for the anonymised copies.")
    roots = []
    for given in inputs:
        p = Path(given)
        if not p.exists():
            raise InputError(f"{given}: no such file or folder.")
        rp = p.resolve()
        if rp.is_dir() and _inside(out, rp):
            raise InputError(f"--out {out_dir} is inside the input folder {given}: choose an output folder outside "
                             "every input (a later run would read its own outputs).")
        roots.append((p, rp))
    plan: list[tuple[Path, Path | None, str]] = []
    for p, rp in roots:
        if rp.is_dir():
            files = sorted((Path(d) / f for d, dirs, fs in os.walk(rp) for f in fs), key=lambda f: str(f))
            pairs = [(f, Path(rp.name) / f.relative_to(rp)) for f in files]
        else:
            pairs = [(rp, Path(rp.name))]
        for src, rel in pairs:
            ext = src.suffix.lower()
            if ext in VIDEO_EXTENSIONS:
                plan.append((src, None, "a video: not anonymised (extract its frames first)"))
                continue
            if ext not in IMAGE_EXTENSIONS and rp.is_dir():
                continue  # not a picture (text, archives, ...): a folder's other files are left alone
            suffix = ".png" if png or ext not in KEPT_FORMATS else rel.suffix
            plan.append((src, out / rel.with_suffix(suffix), ""))
    inputs_set = {src for src, _, _ in plan}
    seen: dict[Path, Path] = {}
    checked = []
    for src, dst, why in plan:
        if dst is not None:
            if dst in inputs_set or any(_inside(dst, rp) and rp.is_dir() for _, rp in roots) or dst == src:
                raise InputError(f"{src}: its output {dst} would overwrite an input. Choose another --out.")
            if dst in seen:
                dst, why = None, f"its output name {dst.name} is already taken by {seen[dst]}"
            else:
                seen[dst] = src
        checked.append((src, dst, why))
    return checked


def _tag(path: Path) -> str | None:
    """The permutation tag a PNG written by :func:`anonymize_files` carries (None: no tag)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return getattr(im, "text", {}).get(TAG_CHUNK)
    except Exception:  # noqa: BLE001 - unreadable: load_image has already said why, or will
        return None


def _write(image: np.ndarray, dst: Path, overwrite: bool, tag: str | None = None) -> None:
    from PIL import Image, PngImagePlugin

    if dst.exists() and not overwrite:
        raise InputError(f"{dst}: exists (add --overwrite to replace outputs).")
    fmt = KEPT_FORMATS.get(dst.suffix.lower(), "PNG")
    options: dict = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if tag is not None:  # a permuted picture (always PNG): its tag, for --decrypt to check the key
        info = PngImagePlugin.PngInfo()
        info.add_text(TAG_CHUNK, tag)
        options["pnginfo"] = info
    tmp = dst.with_name(dst.name + ".partial")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp, format=fmt, **options)  # a new image object: no metadata travels with it
        os.replace(tmp, dst)
    except OSError as exc:
        raise InputError(f"{dst}: cannot write it ({exc.strerror or exc}); choose an --out folder you can write "
                         "to.") from None


def anonymize_files(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, method: str, *,
                    key: bytes | None = None, decrypt: bool = False, seed: int = 0, estimator=None,
                    keep_faceless: bool = False, overwrite: bool = False,
                    progress: Callable[[Iterable], Iterable] | None = None) -> AnonymizeSummary:
    """Write an anonymised copy of every picture under ``inputs`` into ``out_dir``.

    Args:
        inputs: picture files and folders (walked recursively, in sorted order).
        out_dir: the output folder (created); must not lie inside an input folder.
        method: a registered privacy transform (:func:`agescan.privacy.list_privacy_ops`).
        key: the secret of a keyed transform (the keyed permutation).
        decrypt: undo ``method`` with ``key`` instead (reversible transforms only).
        seed: seeds seeded transforms (the eye mosaic); face ``i`` of a picture draws from ``(seed, i)``.
        estimator: the :class:`agescan.AgeEstimator` whose detection stage finds the faces (default: a new one with
            the default detector; loaded only when the transform needs faces).
        keep_faceless: also write pictures in which no face is found (unchanged by face transforms).
        overwrite: replace existing output files (inputs are never written).
        progress: wraps the list of files (e.g. ``tqdm``) to show progress.

    Returns:
        An :class:`AnonymizeSummary`; unreadable files are counted as errors and listed, never raised.
    """
    transform = get_transform(method)
    if decrypt and not transform.reversible:
        raise ConfigError(f"--decrypt: the {transform.name!r} transform removes information and cannot be undone; "
                          "only keyed-permutation can.")
    if (transform.needs_key or decrypt) and key is None:
        raise ConfigError(f"{transform.name} needs the secret key: pass --key-file FILE (create one with "
                          "`agescan anonymize --new-key FILE`, and keep it: without it the pictures cannot be "
                          "restored).")
    lossless = transform.reversible
    tagged = transform.reversible and transform.needs_key  # the keyed permutation: a tag checks the key on restore
    plan = plan_outputs(inputs, out_dir, png=lossless)
    try:  # before any picture is read: an --out that cannot be made fails first, not after the first picture
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out_dir}: cannot create the folder ({exc.strerror or exc}).") from None
    summary = AnonymizeSummary(method=transform.name, decrypt=decrypt)
    needs_faces = transform.scope != "image" and not decrypt
    if needs_faces and estimator is None:
        from agescan import AgeEstimator

        estimator = AgeEstimator()
    items = progress(plan) if progress else plan
    for src, dst, why in items:
        summary.files += 1
        if dst is None:
            summary.skipped.append(f"{src}: {why}")
            continue
        try:
            image = load_image(str(src)).image
        except DecodeError as exc:
            summary.errors += 1
            summary.skipped.append(f"{src}: cannot read it ({str(exc).removeprefix(f'{src}: ')})")
            continue
        if decrypt:
            tag = _tag(src) if tagged else None
            if tag is not None and not hmac.compare_digest(tag, permutation_tag(image, key)):
                summary.mismatched += 1
                summary.skipped.append(f"{src}: not restored: it was permuted with another key, or its pixels "
                                       "changed since (its agescan tag does not match this key)")
                continue
            if tagged and tag is None:
                summary.unchecked.append(str(src))
            result = transform.invert(image, key=key)
        elif needs_faces:
            faces = estimator.detect(image)
            summary.faces += len(faces)
            if not faces:
                summary.no_face += 1
                if not keep_faceless:
                    summary.skipped.append(f"{src}: no face found: not written (--keep-faceless writes it)")
                    continue
            result = transform.apply(image, faces, seed=seed, key=key)
        else:
            result = transform.apply(image, [], seed=seed, key=key)
        _write(result, dst, overwrite, permutation_tag(result, key) if tagged and not decrypt else None)
        summary.written += 1
        summary.outputs.append(str(dst))
    return summary
