"""The identifier -> pseudonym table dbt joins to, computed by Python before every build.

The marts carry pseudonyms, never patient ids or staff names (issue 9 item 9). The pseudonym is
``medlake.lake.pseudonyms`` exactly (HMAC-SHA-256 with the lake's secret key), the function
training-set exports use, so a split by patient agrees with the marts. The key never reaches
dbt or the warehouse: medlake writes ``LAKE/derived/identifier_pseudonyms/`` (identifier as it
arrived, its kind, its pseudonym) under the lake lock, and the staging models read it as the
``derived`` source like any raw table, on DuckDB or Spark alike. The table holds what the raw
layer already holds (the identifiers) plus their pseudonyms, and is as private as the raw layer.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from pathlib import Path

import duckdb
import pyarrow as pa

from medlake.errors import LakeError
from medlake.lake import layout as lake_layout
from medlake.lake import pseudonyms
from medlake.warehouse import sql_text

DERIVED_DIR = "derived"
TABLE = "identifier_pseudonyms"
SCHEMA = pa.schema(
    [
        pa.field("identifier_kind", pa.string(), nullable=False),
        pa.field("identifier", pa.string(), nullable=False),
        pa.field("pseudonym", pa.string(), nullable=False),
    ]
)


class IdentifierKind(StrEnum):
    PATIENT = "patient"
    STAFF = "staff"


# Where each kind of identifier arrives in the raw layer: (raw table, column).
IDENTIFIER_COLUMNS: dict[IdentifierKind, tuple[tuple[str, str], ...]] = {
    IdentifierKind.PATIENT: (
        ("dicom_instances", "patient_id"),
        ("pacs_uploads", "patient_id"),
        ("predictions", "patient_id"),
    ),
    IdentifierKind.STAFF: (("exam_labels", "labelled_by"), ("medical_reports", "reported_by")),
}


def derived_dir(lake: Path) -> Path:
    return Path(lake) / DERIVED_DIR


def table_path(lake: Path) -> Path:
    return derived_dir(lake) / TABLE / f"{TABLE}.parquet"


def key_id(key: bytes) -> str:
    """A fingerprint of the key (not the key): a build record can tell that the key changed."""
    return hmac.new(key, b"medlake pseudonym key id", hashlib.sha256).hexdigest()[:16]


def _distinct_values(lake: Path, table: str, column: str) -> list[str]:
    query = (
        f"select distinct {sql_text.identifier(column)} from read_parquet(?, union_by_name = true) "
        f"where nullif(trim({sql_text.identifier(column)}), '') is not null"
    )
    try:
        with duckdb.connect() as connection:
            rows = connection.execute(query, [sql_text.parquet_glob(lake_layout.raw_dir(lake, table))]).fetchall()
    except duckdb.Error as exc:
        raise LakeError(f"cannot read {table}.{column} in the raw layer of {lake}: {exc}") from exc
    return [value for (value,) in rows]


def _pseudonym(kind: IdentifierKind, key: bytes, value: str) -> str | None:
    if kind is IdentifierKind.PATIENT:
        return pseudonyms.pseudonymise(key, value)
    return pseudonyms.pseudonymise_staff(key, value)


def write(lake: Path) -> str:
    """(Re)write the lake's pseudonym table from every identifier in its raw layer; returns the key id."""
    key = pseudonyms.pseudonym_key(lake)
    kinds, identifiers, pseudonym_values = [], [], []
    for kind, columns in IDENTIFIER_COLUMNS.items():
        values = sorted({value for table, column in columns for value in _distinct_values(lake, table, column)})
        for value in values:
            pseudonym = _pseudonym(kind, key, value)
            if pseudonym is not None:
                kinds.append(kind.value)
                identifiers.append(value)
                pseudonym_values.append(pseudonym)
    rows = pa.table([kinds, identifiers, pseudonym_values], schema=SCHEMA)
    try:
        lake_layout.write_parquet_atomic(rows, table_path(lake))
    except OSError as exc:
        raise LakeError(f"cannot write {table_path(lake)}: {exc.strerror or exc}") from exc
    return key_id(key)
