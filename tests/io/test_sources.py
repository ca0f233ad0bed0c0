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


def test_symlink_loop_is_walked_once(tmp_path):
    _touch(tmp_path / "d" / "x.jpg")
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    assert [i.path for i in iter_sources(tmp_path)] == [str(tmp_path / "d" / "x.jpg")]


def test_a_link_to_a_folder_is_an_alias_and_sources_never_list_a_file_twice(tmp_path):
    """A link to a folder the scan walks is not walked (the folder is listed under its own path, even when the link
    sorts first: it used to take the folder's files and turn the folder itself into a "symlink loop" error); a link
    to a folder outside the sources is followed; overlapping sources and a file named twice are listed once."""
    real = _touch(tmp_path / "case" / "zreal" / "k.jpg")
    os.symlink(real.parent, tmp_path / "case" / "a_alias")
    outside = _touch(tmp_path / "elsewhere" / "o.jpg")
    os.symlink(outside.parent, tmp_path / "case" / "b_link_out")
    notes = _touch(tmp_path / "case" / "notes.dat", b"not an image by name or signature")
    case = tmp_path / "case"
    items = list(iter_sources(case))
    assert [(i.path, i.error) for i in items] == [(str(case / "b_link_out" / "o.jpg"), ""), (str(real), "")]
    again = list(iter_sources([case, case / "zreal", real, case, notes, real]))
    assert [i.path for i in again] == [i.path for i in items] + [str(notes)]  # named: taken whatever its name
    assert [i.path for i in iter_sources([real, case])] == [str(real), str(case / "b_link_out" / "o.jpg")]


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
