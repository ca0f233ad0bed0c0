"""iter_sources: deterministic, lazy walking that records problems instead of raising."""

from __future__ import annotations

import os

import pytest

from agescan.io import iter_sources


def _touch(p, data=b"\xff\xd8\xff\xe0fake"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_sorted_recursive_and_filtered(tmp_path):
    _touch(tmp_path / "b.jpg")
    _touch(tmp_path / "a.PNG", b"\x89PNG\r\n\x1a\nxx")
    _touch(tmp_path / "sub" / "c d.jpeg")
    _touch(tmp_path / "notes.txt", b"hello")
    _touch(tmp_path / "renamed.dat")  # JPEG signature, odd extension: still found
    items = list(iter_sources(tmp_path))
    names = [os.path.relpath(i.path, tmp_path) for i in items]
    assert names == ["a.PNG", "b.jpg", "renamed.dat", os.path.join("sub", "c d.jpeg")]
    assert all(i.error == "" for i in items)
    flat = [os.path.basename(i.path) for i in iter_sources(tmp_path, recursive=False)]
    assert flat == ["a.PNG", "b.jpg", "renamed.dat"]


def test_missing_source_is_an_item_with_error(tmp_path):
    (item,) = list(iter_sources([tmp_path / "missing"]))
    assert item.error == "no such file or folder"


def test_symlink_loop_recorded(tmp_path):
    _touch(tmp_path / "d" / "x.jpg")
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    items = list(iter_sources(tmp_path))
    assert [os.path.basename(i.path) for i in items if not i.error] == ["x.jpg"]
    assert any("symlink loop" in i.error for i in items)


def test_broken_symlink_recorded(tmp_path):
    os.symlink(tmp_path / "gone.jpg", tmp_path / "link.jpg")
    (item,) = list(iter_sources(tmp_path))
    assert item.error == "broken symbolic link"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read folders without permission bits")
def test_permission_denied_recorded(tmp_path):
    d = tmp_path / "locked"
    _touch(d / "x.jpg")
    d.chmod(0)
    try:
        items = list(iter_sources(tmp_path))
    finally:
        d.chmod(0o755)
    assert items[0].error == "cannot open folder: permission denied"
