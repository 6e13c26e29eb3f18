"""The lake directory on disk: where each raw table lives and how files get there safely.

Layout::

    LAKE/
      raw/<table>/schema.parquet                                   zero rows, the table's schema
      raw/<table>/delivery_date=YYYY-MM-DD/part-<batch>.parquet    data, one file per batch
      medlake.duckdb                                               dbt's warehouse

The zero-row ``schema.parquet`` means every dbt source resolves even before the first
delivery of that kind (DuckDB refuses a glob that matches nothing). Part files are
written to a hidden temporary name in the same directory and renamed into place, so a
reader never sees half a file; a batch re-written after a crash gets the same name
because batch ids are derived from the batch's inputs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from medlake.errors import LakeError
from medlake.file_modes import restrict_umask
from medlake.lake.raw_schema import RAW_TABLES

WAREHOUSE_FILE = "medlake.duckdb"
# One advisory lock per lake, held by `land`/`scan-dicom` and by `build`: a build must never see half a landing.
LOCK_FILE = ".landing.lock"
PARQUET_COMPRESSION = "zstd"


def raw_dir(lake: Path, table: str) -> Path:
    if table not in RAW_TABLES:
        raise LakeError(f"unknown raw table {table!r}; known: {', '.join(sorted(RAW_TABLES))}")
    return lake / "raw" / table


def warehouse_path(lake: Path) -> Path:
    return lake / WAREHOUSE_FILE


def init_lake(lake: Path) -> None:
    """Create the lake's folders and each raw table's zero-row schema file (idempotent).

    Every writer starts here, so this is where the process umask is tightened (``file_modes``):
    nothing under the lake is readable by other users, whether medlake runs as a CLI or a library.
    """
    restrict_umask()
    try:
        for table, schema in RAW_TABLES.items():
            directory = raw_dir(lake, table)
            directory.mkdir(parents=True, exist_ok=True)
            schema_file = directory / "schema.parquet"
            if not schema_file.exists() or pq.read_schema(schema_file) != schema:
                write_parquet_atomic(schema.empty_table(), schema_file)
    except OSError as exc:
        raise LakeError(f"cannot write to lake directory {lake}: {exc.strerror or exc}") from exc


def part_path(lake: Path, table: str, delivery_date: dt.date, batch_id: str) -> Path:
    return raw_dir(lake, table) / f"delivery_date={delivery_date.isoformat()}" / f"part-{batch_id}.parquet"


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` so that the file appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp_name, compression=PARQUET_COMPRESSION)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def write_part(lake: Path, table: str, rows: pa.Table, delivery_date: dt.date, batch_id: str) -> Path | None:
    """Write one batch of a raw table; returns None (and writes nothing) for an empty batch."""
    if rows.num_rows == 0:
        return None
    schema = RAW_TABLES[table]
    return write_parquet_atomic(rows.cast(schema), part_path(lake, table, delivery_date, batch_id))


def read_raw(lake: Path, table: str) -> pa.Table:
    """Read a whole raw table (all parts). For tests and small tables, not for big scans."""
    files = sorted(raw_dir(lake, table).rglob("*.parquet"))
    schema = RAW_TABLES[table]
    if not files:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=schema) for f in files])


@contextlib.contextmanager
def exclusive_lock(lake: Path, *, busy_message: str) -> Iterator[BinaryIO]:
    """Hold the lake's exclusive advisory lock for the with-block; fail fast with ``busy_message`` if taken.

    Yields the locked file: a child process that inherits its descriptor (``pass_fds``) holds the
    lock with its parent, so the lock is free only once both have ended (``medlake build``'s dbt).
    """
    lock_path = lake / "raw" / LOCK_FILE
    try:
        handle = open(lock_path, "a+b")  # noqa: SIM115 - held for the whole with-block
    except OSError as exc:
        raise LakeError(f"cannot write to lake directory {lake}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeError(busy_message) from None
        yield handle
    finally:
        handle.close()
