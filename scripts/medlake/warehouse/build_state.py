"""What last built a lake's warehouse, recorded in the warehouse itself.

``medlake build`` builds incrementally: it folds the rows landed since the previous build
into the marts. That is only correct while the dbt project is the one that built them, so
after every complete build the project's fingerprint (a hash of the models, macros, seeds and
project files) and the latest landing time the build had seen are written to
``medlake_meta.build_state`` in ``LAKE/medlake.duckdb``. The next build compares fingerprints
(a changed project means a full rebuild) and tests only the rows landed after that time.

Keeping the record in the warehouse (not in dbt's target directory) ties it to the data it
describes: a copied lake carries it, a deleted warehouse loses it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from medlake.errors import LakeError
from medlake.lake import layout as lake_layout
from medlake.lake.raw_schema import RAW_TABLES
from medlake.warehouse import sql_text

STATE_SCHEMA = "medlake_meta"
STATE_TABLE = "build_state"
# What decides the marts' content; tests and analyses do not, so editing them keeps builds incremental.
FINGERPRINT_DIRECTORIES = ("models", "macros", "seeds")
FINGERPRINT_SUFFIXES = (".sql", ".yml", ".yaml", ".csv")
FINGERPRINT_FILES = ("dbt_project.yml", "profiles.yml")
# Raw tables written by a landing (they carry ingested_at); PACS tables have their own run times.
LANDED_TABLES = tuple(name for name, schema in RAW_TABLES.items() if "ingested_at" in schema.names)
PACS_TABLES = tuple(name for name in RAW_TABLES if name not in LANDED_TABLES)


@dataclass(frozen=True)
class BuildState:
    """The record of one complete, successful build."""

    project_fingerprint: str
    lake_path: str  # the staging views read the raw Parquet under this absolute path
    landed_until: dt.datetime | None  # naive UTC; None for a lake with nothing landed
    pacs_signature: str  # the PACS raw files the build saw (pacs_signature())
    built_at: dt.datetime  # naive UTC
    full_refresh: bool
    include_patient_id: bool = False  # the marts carry patient ids (opt-in at build time)
    pseudonym_key_id: str = ""  # pseudonym_table.key_id of the key the marts' pseudonyms were made with

    def to_dict(self) -> dict:
        return {
            "project_fingerprint": self.project_fingerprint,
            "lake_path": self.lake_path,
            "landed_until": self.landed_until.isoformat(sep=" ") if self.landed_until else None,
            "pacs_signature": self.pacs_signature,
            "built_at": self.built_at.isoformat(sep=" "),
            "full_refresh": self.full_refresh,
            "include_patient_id": self.include_patient_id,
            "pseudonym_key_id": self.pseudonym_key_id,
        }


def project_fingerprint(project_dir: Path, packages: tuple[str, ...] = ("dbt-core", "dbt-duckdb")) -> str:
    """A hash of every file that decides what the marts contain, plus the versions of ``packages`` that run them."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    files = [project_dir / name for name in FINGERPRINT_FILES]
    for directory in FINGERPRINT_DIRECTORIES:
        files += sorted(p for p in (project_dir / directory).rglob("*") if p.suffix in FINGERPRINT_SUFFIXES)
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    for package in packages:
        digest.update(f"{package}=={version(package)}\0".encode())
    return digest.hexdigest()


def pacs_signature(lake: Path) -> str:
    """A hash of the PACS raw files (names, sizes, modification times): equal means no PACS run wrote since.

    PACS rows carry run times, not landing times, so the PACS marts cannot be built by watermark;
    they are small, and rebuilt whenever this signature moves.
    """
    digest = hashlib.sha256()
    for table in PACS_TABLES:
        for path in sorted(lake_layout.raw_dir(lake, table).rglob("*.parquet")):
            stat = path.stat()
            digest.update(f"{path.relative_to(lake)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def landed_until(lake: Path) -> dt.datetime | None:
    """The latest ``ingested_at`` in the lake's landed raw tables (Parquet statistics only, no full scan)."""
    # one bound glob per table (sql_text: the lake path cannot widen it); statistics answer max()
    selects = [
        "select max(ingested_at) as latest from read_parquet(?, hive_partitioning = false, union_by_name = true)"
    ] * len(LANDED_TABLES)
    globs = [sql_text.parquet_glob(lake_layout.raw_dir(lake, table)) for table in LANDED_TABLES]
    try:
        with duckdb.connect() as connection:
            connection.execute("set TimeZone = 'UTC'")
            [(latest,)] = connection.execute(
                f"select max(latest) from ({' union all '.join(selects)})", globs
            ).fetchall()
    except duckdb.Error as exc:
        raise LakeError(f"cannot read the raw layer of {lake}: {exc}") from exc
    if latest is None:
        return None
    return latest.astimezone(dt.UTC).replace(tzinfo=None) if latest.tzinfo else latest


def read(warehouse: Path) -> BuildState | None:
    """The warehouse's build record, or None (no warehouse, or built by something that kept none)."""
    if not warehouse.is_file():
        return None
    try:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            rows = connection.execute(
                f"select project_fingerprint, lake_path, landed_until, pacs_signature, built_at, full_refresh, "
                f"include_patient_id, pseudonym_key_id from {STATE_SCHEMA}.{STATE_TABLE}"
            ).fetchall()
    except (duckdb.CatalogException, duckdb.BinderException):
        return None  # no record, or one from an older medlake
    except duckdb.Error as exc:
        raise LakeError(f"cannot read the build record in {warehouse}: {exc}") from exc
    if len(rows) != 1:
        return None
    fingerprint, lake_path, landed, pacs, built_at, full_refresh, include_patient_id, key_id = rows[0]
    return BuildState(
        fingerprint, lake_path, landed, pacs, built_at, bool(full_refresh), bool(include_patient_id), key_id
    )


def write(warehouse: Path, state: BuildState) -> None:
    """Replace the warehouse's build record (one row)."""
    try:
        with duckdb.connect(str(warehouse)) as connection:
            connection.execute(f"create schema if not exists {STATE_SCHEMA}")
            connection.execute(
                f"create or replace table {STATE_SCHEMA}.{STATE_TABLE} ("
                "project_fingerprint varchar not null, lake_path varchar not null, landed_until timestamp, "
                "pacs_signature varchar not null, "
                "built_at timestamp not null, full_refresh boolean not null, include_patient_id boolean not null, "
                "pseudonym_key_id varchar not null)"
            )
            connection.execute(
                f"insert into {STATE_SCHEMA}.{STATE_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    state.project_fingerprint,
                    state.lake_path,
                    state.landed_until,
                    state.pacs_signature,
                    state.built_at,
                    state.full_refresh,
                    state.include_patient_id,
                    state.pseudonym_key_id,
                ],
            )
    except duckdb.Error as exc:
        raise LakeError(f"cannot record the build in {warehouse}: {exc}") from exc
