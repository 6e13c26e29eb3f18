"""The engines ``medlake build`` can run the dbt project on, as small value objects.

DuckDB (the default) keeps the whole warehouse in one file, ``LAKE/medlake.duckdb``. Apache
Spark (dbt-spark's ``session`` method: a local SparkSession, the engine a cluster runs) keeps a
Hive metastore and Parquet tables under ``LAKE/spark/`` (:mod:`medlake.warehouse.spark`). The
same models, seeds and tests run on both; engine-specific SQL sits behind dispatched macros.
Each engine keeps its own build record, so one lake can be built by both side by side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from medlake.errors import EngineError
from medlake.lake import layout as lake_layout
from medlake.vocab import Engine as EngineName
from medlake.warehouse import build_state, spark


@dataclass(frozen=True)
class Engine:
    """One engine: its dbt target (profiles.yml) and where its warehouse and build record live."""

    name: EngineName
    dbt_target: str
    adapter_packages: tuple[str, ...]  # their versions are part of the project fingerprint

    @property
    def target_suffix(self) -> str:
        """Appended to a lake's dbt target directory: each engine keeps its own manifest and logs."""
        return "" if self.name is EngineName.DUCKDB else f"-{self.name}"

    def warehouse(self, lake: Path) -> Path:
        """The warehouse of ``lake`` on this engine: a DuckDB file, or the Spark metastore + tables folder."""
        return lake_layout.warehouse_path(lake) if self.name is EngineName.DUCKDB else spark.spark_dir(lake)

    def has_warehouse(self, lake: Path) -> bool:
        if self.name is EngineName.DUCKDB:
            return lake_layout.warehouse_path(lake).is_file()
        return spark.metastore_dir(lake).is_dir()

    def read_state(self, lake: Path) -> build_state.BuildState | None:
        if self.name is EngineName.DUCKDB:
            return build_state.read(lake_layout.warehouse_path(lake))
        return spark.read_state(lake)

    def write_state(self, lake: Path, state: build_state.BuildState) -> None:
        if self.name is EngineName.DUCKDB:
            build_state.write(lake_layout.warehouse_path(lake), state)
        else:
            spark.write_state(lake, state)

    def project_fingerprint(self, project_dir: Path) -> str:
        fingerprint = build_state.project_fingerprint(project_dir, packages=("dbt-core", *self.adapter_packages))
        if self.name is EngineName.SPARK:
            # Spark's raw tables keep the schema they were created with: a new raw schema means new tables
            return hashlib.sha256(f"{fingerprint}\0{spark.raw_schema_signature()}".encode()).hexdigest()
        return fingerprint

    def dbt_environment(self, from_scratch: bool) -> dict[str, str]:
        """Variables this engine's dbt run needs; ``from_scratch``: a first build or a full refresh."""
        if self.name is EngineName.SPARK and from_scratch:
            return {spark.RECREATE_RAW_VARIABLE: "1"}
        return {}

    def prepare(self, lake: Path) -> str | None:
        """Check the engine can run and its warehouse belongs to ``lake``; returns what was reset, if anything."""
        if self.name is EngineName.SPARK:
            spark.check_runtime()
            return spark.reset_if_foreign(lake)
        return None


ENGINES = {
    EngineName.DUCKDB: Engine(EngineName.DUCKDB, "dev", ("dbt-duckdb",)),
    EngineName.SPARK: Engine(EngineName.SPARK, "spark", ("dbt-spark", "pyspark")),
}
DEFAULT_ENGINE = EngineName.DUCKDB


def get(name: str | EngineName) -> Engine:
    """The engine called ``name`` ('duckdb' or 'spark')."""
    try:
        return ENGINES[EngineName(name)]
    except ValueError:
        raise EngineError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None
