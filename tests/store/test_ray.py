"""The distributed scan on a real local Ray runtime: same results as the local scan, resumable by partition."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'agescan[ray]')")
pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'agescan[ray]')")


def _items(target) -> list[tuple]:
    from agescan.store import connect

    db = connect(target, readonly=True)
    try:
        rows = db.execute("SELECT source, frame_index, sha256, pdq, pdq_mirror, pdq_quality, n_faces, max_p_minor, "
                          "error_type FROM items ORDER BY source, frame_index").fetchall()
        return [(*r[:7], None if r[7] is None else round(r[7], 4), r[8]) for r in rows]
    finally:
        db.close()


@pytest.mark.slow
def test_ray_scan_matches_the_local_scan_and_resumes_by_partition(tmp_path, astronaut_path, store_target):
    from PIL import Image

    ev = tmp_path / "evidence"
    (ev / "sub dir").mkdir(parents=True)
    for i in range(5):
        Image.open(astronaut_path).convert("RGB").rotate(i * 3).save(ev / f"photo {i}.jpg", quality=90)
    (ev / "sub dir" / "ünïcode.png").write_bytes(astronaut_path.read_bytes())
    (ev / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    Image.new("RGB", (64, 48), (20, 90, 30)).save(ev / "lawn.png")
    local_db = str(tmp_path / "local.sqlite")
    run = [sys.executable, "-m", "agescan", "scan", str(ev), "--no-progress"]
    local = subprocess.run([*run, "--db", local_db], capture_output=True, text=True, timeout=300)
    assert local.returncode == 1, local.stderr  # broken.jpg

    work = tmp_path / "parts"
    ray_cmd = [*run, "--db", store_target, "--engine", "ray", "--partition-size", "3", "--work-dir", str(work),
               "--ray-actors", "2"]
    first = subprocess.run(ray_cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stderr
    assert "3 partition(s) scanned, 3 merged, 0 already done; 8 new item(s)" in first.stderr
    assert _items(store_target) == _items(local_db)  # same pipeline, same numbers
    assert len(list(work.glob("*.parquet"))) == 3 and len(list(work.glob("*.merged"))) == 3

    # A driver that died after partition 1 was written but before it was merged, and while partition 2 ran:
    parts = sorted(work.glob("*.parquet"))
    parts[1].with_suffix(".merged").unlink()
    parts[2].unlink()
    parts[2].with_suffix(".merged").unlink()
    again = subprocess.run(ray_cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1, again.stderr
    assert "1 partition(s) scanned, 2 merged, 1 already done; 0 new item(s)" in again.stderr
    assert _items(store_target) == _items(local_db)  # nothing lost, nothing duplicated
