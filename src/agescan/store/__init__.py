"""Results databases: one versioned schema (runs, items, faces) in SQLite or PostgreSQL, behind resumable scans."""

from agescan.store.db import Database, connect, is_postgres, redact
from agescan.store.resultstore import SCHEMA_VERSION, ResultStore, check_schema

__all__ = ["Database", "ResultStore", "SCHEMA_VERSION", "check_schema", "connect", "is_postgres", "redact"]
