"""Scans beyond one machine: the same pipeline mapped over partitions of the file list with Ray Data.

The driver streams the listing of the sources (:meth:`ScanConfig.items <agescan.scan.ScanConfig.items>`, the
local scan's listing) in agescan's deterministic order and cuts it into partitions of
``partition_size`` items, writing each partition's item list to the work folder as it goes (memory stays at
one partition, whatever the size of the case). Ray Data maps a scanning actor (one :class:`~agescan.AgeEstimator` per actor,
loaded once, built from the driver's estimator's parameters) over the partitions; each actor runs the local scan's
runner (:func:`agescan.scan.runner.scan_items`) over its partition, and its results are written to one Parquet file in the work
folder, atomically (a temporary name, then a rename), and the driver merges each finished file into the
results store (SQLite or PostgreSQL) item by item, idempotently. A ``.merged`` marker beside a file
records a completed merge.

Resuming is by partition: rerun the same command and finished partitions are neither scanned nor merged
again; a file written but not merged (the driver died) is merged; a partition that was running is scanned
again, skipping what the store already holds. Because partition names carry a digest of their item list,
a changed folder never reuses a stale file. No cluster code here: Ray schedules, retries failed tasks and
moves data; agescan only decides what a partition is and where its result goes.

Sources and the work folder must be visible at the same paths on every node (a shared filesystem).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from agescan.errors import ConfigError
from agescan.io import SourceItem

#: Columns of a partition file: one row per item (a still image, a video frame, or an error).
PARTITION_COLUMNS = ("source", "frame_index", "record")


@dataclass(frozen=True)
class Partition:
    index: int
    digest: str  # of the partition's item list: a changed listing gets new partition names
    n_items: int
    sources: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}-{self.digest[:12]}"


def plan_partitions(items: Iterable[SourceItem], size: int, work_dir: Path) -> Iterator[Partition]:
    """Cut the deterministic listing ``items`` into partitions of ``size`` items, writing each one's item list to
    ``work_dir/NAME.items.json`` (atomically; kept, so a resumed run plans the same partitions)."""
    if size < 1:
        raise ConfigError(f"--partition-size must be at least 1. Got {size}.")
    work_dir.mkdir(parents=True, exist_ok=True)

    def emit(index: int, chunk: list[SourceItem]) -> Partition:
        text = json.dumps([asdict(it) for it in chunk], ensure_ascii=False)
        part = Partition(index, hashlib.sha256(text.encode()).hexdigest(), len(chunk),
                         tuple(it.path for it in chunk))
        path = work_dir / f"{part.name}.items.json"
        if not path.exists():
            tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        return part

    chunk: list[SourceItem] = []
    index = 0
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield emit(index, chunk)
            index, chunk = index + 1, []
    if chunk:
        yield emit(index, chunk)


def write_partition(path: Path, rows: list[dict]) -> None:
    """Write one partition's records to ``path`` atomically (Parquet via pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"source": [r["source"] for r in rows],
                      "frame_index": pa.array([r["frame_index"] for r in rows], pa.int64()),
                      "record": [json.dumps(r, ensure_ascii=False) for r in rows]})
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_partition(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [json.loads(r) for r in pq.read_table(path, columns=["record"]).column("record").to_pylist()]


class PartitionScanner:
    """The Ray Data actor: scans whole partitions with one loaded estimator, through the local scan's runner."""

    def __init__(self, estimator_options: dict, work_dir: str):
        from agescan import AgeEstimator

        self.est = AgeEstimator(**estimator_options).load()
        self.work = Path(work_dir)

    def __call__(self, batch: dict) -> dict:
        from agescan.results import to_dict
        from agescan.scan.runner import scan_items

        out: dict[str, list] = {"name": [], "items": [], "seconds": [], "counts": []}
        for name, skip_json in zip(batch["name"], batch["skip"]):
            t0 = time.time()
            path = self.work / f"{name}.parquet"
            items = [SourceItem(**d) for d in json.loads((self.work / f"{name}.items.json").read_text("utf-8"))]
            counts = {}
            if not path.exists():
                rows: list[dict] = []
                summary = scan_items(self.est, items, lambda r: rows.append(to_dict(r, include_distribution=True)),
                                     skip={(s, int(f)) for s, f in json.loads(skip_json)})
                write_partition(path, rows)
                counts = summary.counts()
            out["name"].append(name)
            out["items"].append(len(items))
            out["seconds"].append(time.time() - t0)
            out["counts"].append(json.dumps(counts))
        return out


@dataclass(frozen=True)
class RayEngine:
    """Run :func:`agescan.scan.run_scan` on a Ray cluster (``engine=RayEngine(...)``; needs a StoreSink).

    Args:
        work_dir: where partition files go, on storage every node sees.
        partition_size: items (files or archive members) per partition.
        address: the Ray cluster to join (``auto``, ``ray://head:10001``); None starts a local Ray runtime.
        actors: scanning actors, one CPU each (0: the cluster's CPU count).
        log: where per-partition progress lines go.
    """

    work_dir: Path
    partition_size: int = 1000
    address: str | None = None
    actors: int = 0
    log: Any = sys.stderr

    def run(self, estimator, config, sink, progress=None):
        """Partition ``config``'s items, scan the partitions on Ray, merge each finished one into ``sink`` (a
        StoreSink); returns the scan's :class:`~agescan.scan.ScanSummary` (``partitions``: partition counts)."""
        from agescan.scan.runner import ScanSummary

        if not hasattr(sink, "write_records"):
            raise ConfigError("The Ray engine merges partitions into a results store: use a StoreSink (--db).")
        parts = plan_partitions(config.items(), self.partition_size, Path(self.work_dir))
        options = {**estimator.get_params(), "workers": 1, "threads": estimator.threads or 1}
        summary = ScanSummary()
        summary.partitions = run_ray_scan(parts, options, Path(self.work_dir), sink.stored_among,
                                          sink.write_records, summary, address=self.address, actors=self.actors,
                                          log=self.log)
        return summary


def run_ray_scan(parts: Iterable[Partition], estimator_options: dict, work_dir: Path,
                 stored: Callable[[tuple[str, ...]], set[tuple[str, int]]], merge: Callable[[list[dict]], int],
                 summary, *, address: str | None = None, actors: int = 0, log: Any = sys.stderr) -> dict:
    """Scan ``parts`` on Ray and merge each finished partition with ``merge(records) -> new items``.

    ``stored(sources)`` returns the (source, frame) keys the store already holds among ``sources``: a partition
    to scan skips them. Each scanned partition's counts are added to ``summary``. Returns partition counts:
    partitions, scanned, merged and skipped, items, new items merged.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray Data: pip install 'agescan[ray]'.") from None
    work_dir.mkdir(parents=True, exist_ok=True)
    stats = {"partitions": 0, "items": 0, "scanned": 0, "merged": 0, "skipped": 0, "new_items": 0}

    def merge_file(name: str) -> None:
        n = merge(read_partition(work_dir / f"{name}.parquet"))
        (work_dir / f"{name}.merged").touch()
        stats["merged"] += 1
        stats["new_items"] += n

    todo = []
    for p in parts:
        stats["partitions"] += 1
        stats["items"] += p.n_items
        if (work_dir / f"{p.name}.merged").exists():
            stats["skipped"] += 1
        elif (work_dir / f"{p.name}.parquet").exists():
            merge_file(p.name)  # written by a run that died before merging it
        else:
            todo.append({"name": p.name, "skip": json.dumps(sorted(stored(p.sources)))})
    if not todo:
        return stats
    started_here = not ray.is_initialized()
    if started_here:
        import logging

        logging.getLogger("ray").setLevel(logging.WARNING)
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        n_actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        options = {**estimator_options, "workers": 1, "threads": estimator_options.get("threads") or 1}
        ds = ray.data.from_items(todo, override_num_blocks=len(todo))
        ds = ds.map_batches(PartitionScanner, fn_constructor_args=(options, str(work_dir)), batch_size=1,
                            concurrency=min(n_actors, len(todo)), num_cpus=1)
        for row in ds.iter_rows():
            merge_file(row["name"])
            summary.merge(json.loads(row["counts"]))
            stats["scanned"] += 1
            print(f"partition {row['name']}: {row['items']} item(s) in {row['seconds']:.1f}s; "
                  f"{stats['scanned']}/{len(todo)} scanned", file=log, flush=True)
    finally:
        if started_here:
            ray.shutdown()
    return stats
