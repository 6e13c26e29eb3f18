"""The Spark warehouse of a lake: ``medlake build --engine spark``.

dbt-spark's ``session`` method runs a local SparkSession inside dbt (profiles.yml, target
``spark``). Everything Spark keeps lives in the lake, so incremental builds continue across
invocations and two lakes (or two tests) never share a table::

    LAKE/spark/metastore_db/            the Hive metastore (embedded Derby: one process at a time)
    LAKE/spark/warehouse/<schema>.db/   the tables, plain Parquet (staging views, marts...)
    LAKE/spark/build_state.json         medlake's build record (what DuckDB keeps in its file)

The raw layer stays where it is: an on-run-start hook registers each raw table as an external
Parquet table (macros/spark/raw_sources.sql). The metastore names tables by absolute path, so
a copied or moved lake must not reuse it: :func:`reset_if_foreign` drops it and the next build
is a first build. The marts are plain Parquet, so any engine reads them; :func:`open_marts`
gives a DuckDB connection with ``marts.<table>`` views over them (``medlake query --engine spark``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
from pathlib import Path

import duckdb

from medlake import extras
from medlake.atomic import atomic_write
from medlake.errors import EngineError, LakeError, MissingExtraError
from medlake.warehouse.build_state import BuildState

SPARK_DIR = "spark"
# Set for a first build or full refresh: the on-run-start hook then re-creates the raw tables.
RECREATE_RAW_VARIABLE = "MEDLAKE_SPARK_RECREATE_RAW"
STATE_FILE = "build_state.json"
MARTS_SCHEMA = "marts"
JAVA_HINT = (
    "Spark needs Java 17: `make setup` installs the Debian package openjdk-17-jre-headless "
    "(or: sudo apt-get install -y openjdk-17-jre-headless), or set JAVA_HOME"
)
# Top-level modules the Spark extra installs (pyproject.toml [project.optional-dependencies] spark).
SPARK_MODULES = ("pyspark", "py4j", "dbt.adapters.spark")
EXTRAS_HINT = "Install it with: pip install 'medlake[spark]' (make setup does)"


def spark_dir(lake: Path) -> Path:
    return lake / SPARK_DIR


def metastore_dir(lake: Path) -> Path:
    return spark_dir(lake) / "metastore_db"


def warehouse_dir(lake: Path) -> Path:
    return spark_dir(lake) / "warehouse"


def table_dir(lake: Path, schema: str, table: str) -> Path:
    """Where Spark keeps a managed table's Parquet files (spark.sql.warehouse.dir/<schema>.db/<table>)."""
    return warehouse_dir(lake) / f"{schema}.db" / table


def java_executable() -> str | None:
    """The java that pyspark will start: $JAVA_HOME/bin/java, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        return str(candidate) if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def check_runtime() -> None:
    """Raise :class:`EngineError` (no Java) or :class:`MissingExtraError` (no Spark extra) with what to install."""
    if java_executable() is None:
        raise EngineError(f"no Java runtime found. {JAVA_HINT}")
    absent = extras.missing(SPARK_MODULES)
    if absent:
        raise MissingExtraError(f"`--engine spark` needs the Spark extra (missing: {', '.join(absent)}). {EXTRAS_HINT}")


def raw_schema_signature() -> str:
    """The raw layer's contract (medlake.lake.raw_schema) as text: Spark's raw tables are made from it."""
    from medlake.lake.raw_schema import RAW_TABLES

    return "\n".join(f"{name}: {schema}" for name, schema in sorted(RAW_TABLES.items()))


def read_state(lake: Path) -> BuildState | None:
    """The Spark warehouse's build record, or None (never built, or a build that did not finish)."""
    path = spark_dir(lake) / STATE_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LakeError(f"cannot read the Spark build record {path}: {exc}") from exc
    try:
        values = {field.name: record[field.name] for field in dataclasses.fields(BuildState) if field.name in record}
        landed = values["landed_until"]
        values["landed_until"] = dt.datetime.fromisoformat(landed) if landed else None
        values["built_at"] = dt.datetime.fromisoformat(values["built_at"])
        return BuildState(**values)
    except (KeyError, TypeError, ValueError):
        return None  # a record from another medlake version: treated as none


def write_state(lake: Path, state: BuildState) -> None:
    """Replace the Spark warehouse's build record (written whole, then renamed into place)."""
    path = spark_dir(lake) / STATE_FILE
    try:
        atomic_write(path, json.dumps(state.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise LakeError(f"cannot record the Spark build in {path}: {exc}") from exc


def reset_if_foreign(lake: Path) -> str | None:
    """Drop a Spark metastore this lake cannot trust, so the next build is a first build.

    Its tables are named by absolute path: a copied lake would write into the original's
    tables, a moved one into a folder that is gone. Without a build record (a first build
    that did not finish) nothing tells whose it is either. Returns the reason, or None.
    """
    if not metastore_dir(lake).exists():
        return None
    state = read_state(lake)
    if state is not None and state.lake_path == str(lake):
        return None
    reason = (
        "the Spark warehouse has no build record"
        if state is None
        else f"the Spark warehouse was built for {state.lake_path}"
    )
    for stale in (metastore_dir(lake), warehouse_dir(lake)):
        shutil.rmtree(stale, ignore_errors=True)
    (spark_dir(lake) / STATE_FILE).unlink(missing_ok=True)
    return reason


def mart_tables(lake: Path) -> list[str]:
    """The marts the Spark warehouse holds (table folders under marts.db)."""
    marts = warehouse_dir(lake) / f"{MARTS_SCHEMA}.db"
    if not marts.is_dir():
        return []
    return sorted(entry.name for entry in marts.iterdir() if entry.is_dir() and not entry.name.startswith((".", "_")))


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_marts(lake: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a ``marts.<table>`` view over each Spark mart's Parquet files.

    Spark writes timestamps without time zone as Parquet TIMESTAMP_MICROS (not adjusted to UTC),
    so DuckDB reads the same naive UTC values its own warehouse holds.
    """
    tables = mart_tables(lake)
    if not tables:
        raise LakeError(f"no Spark marts in {warehouse_dir(lake)}: run `medlake build --lake {lake} --engine spark`")
    connection = duckdb.connect()
    try:
        connection.execute("set TimeZone = 'UTC'")
        connection.execute(f"create schema {MARTS_SCHEMA}")
        for table in tables:
            files = str(table_dir(lake, MARTS_SCHEMA, table) / "*.parquet")
            connection.execute(
                f'create view {MARTS_SCHEMA}."{table}" as select * from read_parquet({_sql_string(files)})'
            )
    except duckdb.Error as exc:
        connection.close()
        raise LakeError(f"cannot read the Spark marts in {warehouse_dir(lake)}: {exc}") from exc
    return connection
