"""Column lists of one landing batch, and writing them as that batch's Parquet parts.

Rows are collected as plain Python lists, one per column (:class:`TableColumns`); each row
refers to its source file by index, and the lineage columns are filled once per batch with
one ``take`` (see :func:`write_batch`). Data parts are written first and the manifest part
(``landed_files``) last, so a batch is complete exactly when its manifest part exists. A
batch that landed no file (only refused or unreadable entries, quarantined) still writes an
empty manifest part: without it, its quarantine rows would look like an interrupted batch's
leftovers and the next ``land`` would delete them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from medlake.errors import LakeError
from medlake.lake import layout as lake_layout
from medlake.lake import raw_schema

# The five lineage columns every landed table starts with (raw_schema._LINEAGE).
LINEAGE_COLUMNS = ("landing_run_id", "delivery_date", "ingested_at", "source_file", "source_file_sha256")
MANIFEST_TABLE = "landed_files"
# Write order: the manifest last (see the module doc).
BATCH_TABLES = (
    "exams",
    "exam_labels",
    "medical_reports",
    "image_files",
    "dicom_instances",
    "quarantine",
    MANIFEST_TABLE,
)


class TableColumns:
    """One raw table's non-lineage columns as lists, plus the source-file index of each row."""

    __slots__ = ("columns", "file_of", "schema")

    def __init__(self, schema: pa.Schema) -> None:
        if tuple(schema.names[: len(LINEAGE_COLUMNS)]) != LINEAGE_COLUMNS:  # pragma: no cover - contract guard
            raise AssertionError(f"raw schema does not start with the lineage columns: {schema.names}")
        self.schema = schema
        self.columns: dict[str, Any] = {name: [] for name in schema.names[len(LINEAGE_COLUMNS) :]}
        self.file_of: list[int] = []

    def __len__(self) -> int:
        return len(self.file_of)

    def __getitem__(self, column: str) -> Any:
        return self.columns[column]

    def __setitem__(self, column: str, values: Any) -> None:
        self.columns[column] = values

    def append_row(self, file_index: int, **values: Any) -> None:
        """Append one row from ``file_index``: a value for every named column."""
        self.file_of.append(file_index)
        columns = self.columns
        for column, value in values.items():
            columns[column].append(value)

    def arrays(self) -> list[pa.Array]:
        """The non-lineage columns as Arrow arrays, in schema order."""
        return [_as_array(self.columns[f.name], f.type) for f in self.schema if f.name in self.columns]


def batch_id(paths: Sequence[str], shas: Sequence[str]) -> str | None:
    """sha256 over the sorted (path, sha256) of a batch's files: same inputs, same id; None if none."""
    if not paths:
        return None
    digest = hashlib.sha256()
    for relpath, sha256 in sorted(zip(paths, shas, strict=True)):
        digest.update(f"{relpath}\0{sha256}\n".encode())
    return digest.hexdigest()[:32]


def write_batch(
    lake: Path,
    batch: str,
    *,
    delivery_date: dt.date,
    ingested_at: dt.datetime,
    paths: Sequence[str],
    shas: Sequence[str],
    tables: dict[str, TableColumns],
) -> int:
    """Write a batch's parts in :data:`BATCH_TABLES` order (the manifest last); returns how many."""
    path_array = pa.array(paths, pa.string())
    sha_array = pa.array(shas, pa.string())
    written = 0
    for table in BATCH_TABLES:
        rows = tables[table]
        if not rows.file_of and table != MANIFEST_TABLE:
            continue
        count = len(rows)
        index = pa.array(rows.file_of, pa.int32())
        arrays = [
            pa.repeat(pa.scalar(batch, pa.string()), count),
            pa.repeat(pa.scalar(delivery_date, pa.date32()), count),
            pa.repeat(pa.scalar(ingested_at, raw_schema.UTC_TIMESTAMP), count),
            path_array.take(index),
            sha_array.take(index),
            *rows.arrays(),
        ]
        part = pa.Table.from_arrays(arrays, schema=rows.schema)
        try:
            if count:
                lake_layout.write_part(lake, table, part, delivery_date, batch)
            else:  # an empty manifest part marks a batch that landed no file as complete
                lake_layout.write_parquet_atomic(part, lake_layout.part_path(lake, table, delivery_date, batch))
        except OSError as exc:
            raise LakeError(f"cannot write {table} part to {lake}: {exc.strerror or exc}") from exc
        written += 1
    return written


def _as_array(values: Any, arrow_type: pa.DataType) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values, arrow_type)
