"""Results databases: one versioned schema (runs, items, faces) behind resumable scans."""

from agescan.store.sqlite import SCHEMA_VERSION, ResultStore

__all__ = ["ResultStore", "SCHEMA_VERSION"]
