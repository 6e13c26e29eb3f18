"""The same dbt project on Apache Spark: every mart equal to DuckDB's row for row, and the same answers.

``medlake build --engine spark`` runs dbt-spark's ``session`` method (a local SparkSession, its
Hive metastore and Parquet tables in ``LAKE/spark/``). These tests build real lakes on both
engines and compare every mart both ways (EXCEPT ALL in each direction, the Spark tables read
from their Parquet files by DuckDB, cast to the DuckDB mart's column types), then the analysts'
answers (``medlake.warehouse.queries``) from each engine's marts.

Spark is slow to start (JVM, metastore), so builds are few and shared per module: the real
sample (one first build), and a small synthetic lake plus two later deliveries built
incrementally on both engines under TZ=Europe/Berlin (a watermark read in local time once
skipped a whole delivery on Spark), each stage compared with the other engine and with a
DuckDB full refresh. Every lake has its own metastore (embedded Derby: one process per lake).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from lakehelpers import IN_CI, MARTS
from medlake.devtools import synth
from medlake.errors import MedlakeError
from medlake.lake import landing
from medlake.lake import layout as lake_layout
from medlake.warehouse import dbt_runner, queries, spark

pytestmark = [pytest.mark.slow, pytest.mark.spark]

NON_UTC_ZONE = "Europe/Berlin"  # UTC+1 in winter, +2 in summer: a local-time watermark is an hour or two late
BASE_EXAMS, BASE_SEED = 400, 31


@pytest.fixture(scope="module", autouse=True)
def spark_runtime() -> None:
    try:
        spark.check_runtime()
    except MedlakeError as exc:
        if IN_CI:
            pytest.fail(f"{exc} -- required under CI=true (make setup installs Java and the .[spark] extras)")
        pytest.skip(str(exc))


@contextlib.contextmanager
def local_time_zone(zone: str) -> Iterator[None]:
    """Run the block (and the dbt processes it starts) with TZ=zone, as a user's shell would."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()


def build(lake: Path, engine: str, *, full_refresh: bool = False) -> dbt_runner.BuildSummary:
    return dbt_runner.build(lake, engine=engine, full_refresh=full_refresh, select=None, docs=False, quiet=True)


def forget_targets(lake: Path) -> None:
    for engine in ("duckdb", "spark"):
        shutil.rmtree(dbt_runner.target_path_for(lake, engine), ignore_errors=True)


def engine_differences(lake: Path, reference_warehouse: Path | None = None) -> dict[str, dict]:
    """Per mart: rows only in DuckDB's, rows only in Spark's (EXCEPT ALL both ways), and their column types.

    DuckDB's side is ``reference_warehouse`` (default: the lake's own). Spark's columns are cast to
    DuckDB's types before comparing; the types themselves are reported so a test can require them equal.
    """
    reference = reference_warehouse or lake_layout.warehouse_path(lake)
    differences = {}
    with spark.open_marts(lake) as connection:
        connection.execute(f"attach '{reference}' as duck (read_only)")
        marts = duckdb_marts(connection)
        assert set(MARTS) <= set(marts) and spark.mart_tables(lake) == marts, "the engines built different marts"
        for mart in marts:
            duck_columns = connection.execute(f"describe duck.marts.{mart}").fetchall()
            spark_columns = connection.execute(f"describe marts.{mart}").fetchall()
            names = [column[0] for column in duck_columns]
            assert names == [column[0] for column in spark_columns], f"{mart}: column names or order differ"
            normalised = ", ".join(f'cast("{name}" as {kind}) as "{name}"' for name, kind, *_ in duck_columns)
            spark_rows = f"select {normalised} from marts.{mart}"
            duck_rows = f"select * from duck.marts.{mart}"
            only = [
                connection.execute(f"select count(*) from ({x} except all {y})").fetchone()[0]
                for x, y in ((duck_rows, spark_rows), (spark_rows, duck_rows))
            ]
            differences[mart] = {
                "only_in_duckdb": only[0],
                "only_in_spark": only[1],
                "rows": connection.execute(f"select count(*) from ({duck_rows})").fetchone()[0],
                "type_differences": [
                    (d[0], d[1], s[1]) for d, s in zip(duck_columns, spark_columns, strict=True) if d[1] != s[1]
                ],
            }
    return differences


def duckdb_marts(connection: duckdb.DuckDBPyConnection) -> list[str]:
    rows = connection.execute(
        "select table_name from duckdb_tables() where database_name = 'duck' and schema_name = 'marts' order by 1"
    ).fetchall()
    return [row[0] for row in rows]


def assert_engines_agree(differences: dict[str, dict], context: str = "") -> None:
    unequal = {mart: found for mart, found in differences.items() if found["only_in_duckdb"] or found["only_in_spark"]}
    assert unequal == {}, f"{context}: marts differ between DuckDB and Spark: {unequal}"


def analyst_answers(lake: Path, engine: str, months: tuple[str, ...]) -> dict:
    answers = {}
    for month in months:
        for basis in ("exam", "label"):
            found = queries.covid_without_pneumonia(lake, month=month, date_basis=basis, engine=engine)
            answers[f"covid_without_pneumonia {month} by {basis}"] = (found.to_dict(), found.exam_keys)
    for body_part, min_labels in (("Chest", 6), ("Chest", 2), ("Breast", 1)):
        found = queries.chest_many_labels(lake, body_part=body_part, min_labels=min_labels, limit=25, engine=engine)
        answers[f"many_labels {body_part} >= {min_labels}"] = found.to_dict()
    return answers


# --- the real sample ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_sample_lake(built_sample_lake, tmp_path_factory) -> Iterator[dict]:
    """A copy of the DuckDB-built sample lake, built on Spark as well (first build, every test)."""
    lake = tmp_path_factory.mktemp("spark_sample") / "lake"
    shutil.copytree(built_sample_lake, lake)
    summary = build(lake, "spark")
    yield {"lake": lake, "summary": summary}
    forget_targets(lake)


def test_sample_builds_on_spark_with_every_node_passing(spark_sample_lake):
    summary = spark_sample_lake["summary"]
    assert summary.engine == "spark" and summary.plan.mode == "first build"
    assert not {"error", "fail"} & set(summary.status_counts)
    # the models, seeds, data tests and unit tests DuckDB runs (the unit tests run on Spark too)
    assert summary.status_counts.get("success", 0) >= 20 and summary.status_counts.get("pass", 0) >= 50
    lake = spark_sample_lake["lake"]
    assert set(MARTS) <= set(spark.mart_tables(lake))
    assert spark.metastore_dir(lake).is_dir()
    state = spark.read_state(lake)
    assert state is not None and state.lake_path == str(lake)


def test_sample_marts_equal_duckdbs_row_for_row(spark_sample_lake):
    differences = engine_differences(spark_sample_lake["lake"])
    assert_engines_agree(differences)
    assert differences["fct_exams"]["rows"] == 122 and differences["bridge_exam_labels"]["rows"] > 122
    assert differences["dim_labels"]["rows"] > 0


def test_sample_marts_have_duckdbs_column_types(spark_sample_lake):
    differences = engine_differences(spark_sample_lake["lake"])
    assert {mart: found["type_differences"] for mart, found in differences.items() if found["type_differences"]} == {}


def test_sample_analyst_answers_equal_on_both_engines(spark_sample_lake):
    lake = spark_sample_lake["lake"]
    months = ("2021-07", "2021-11", "2021-12")
    duck, on_spark = analyst_answers(lake, "duckdb", months), analyst_answers(lake, "spark", months)
    assert on_spark == duck
    assert any(answer[0]["count"] for key, answer in duck.items() if key.startswith("covid"))  # not all empty


def test_seed_empty_cells_are_null_on_spark(spark_sample_lake):
    # dbt-spark's session method loads an empty CSV cell as the text 'None' (macros/spark/seeds.sql fixes it)
    with spark.open_marts(spark_sample_lake["lake"]) as connection:
        spelled_none = connection.execute(
            "select count(*) from marts.dim_labels where xrv_pathology = 'None' or description = 'None'"
        ).fetchone()[0]
        without_pathology = connection.execute("select count(*) from marts.dim_labels where xrv_pathology is null")
        assert spelled_none == 0 and without_pathology.fetchone()[0] > 0


# --- a synthetic lake and two later deliveries, incremental on both engines, TZ=Europe/Berlin ------


@pytest.fixture(scope="module")
def synthetic_stages(tmp_path_factory) -> Iterator[list[dict]]:
    """Land a base and two later deliveries; after each, build both engines (incrementally after the
    first) under a non-UTC zone, and compare Spark with DuckDB and DuckDB with a full refresh."""
    root = tmp_path_factory.mktemp("spark_synthetic")
    lake = root / "lake"
    deliveries = [root / "base", root / "increment_1", root / "increment_2"]
    synth.generate(deliveries[0], exams=BASE_EXAMS, seed=BASE_SEED, dicom_exams=2, progress=False)
    for number, delivery in enumerate(deliveries[1:], start=1):
        synth.generate_increment(
            delivery,
            exams=60,
            seed=BASE_SEED + number,
            base_exams=BASE_EXAMS,
            base_seed=BASE_SEED,
            base_dicom_exams=2,
            dicom_exams=1,
        )
    stages = []
    try:
        for number, delivery in enumerate(deliveries):
            with local_time_zone(NON_UTC_ZONE):
                landing.land(delivery, lake, delivery_date=dt.date(2021, 12, 1 + number), workers=None, progress=False)
                duck = build(lake, "duckdb")
                on_spark = build(lake, "spark")
            full = root / f"full_refresh_{number}"
            shutil.copytree(lake, full, ignore=shutil.ignore_patterns("spark"))
            build(full, "duckdb", full_refresh=True)
            stages.append(
                {
                    "duckdb": duck,
                    "spark": on_spark,
                    "engines": engine_differences(lake),
                    "spark_vs_full_refresh": engine_differences(lake, lake_layout.warehouse_path(full)),
                    "landed_exams": landing_count(lake),
                }
            )
            forget_targets(full)
        yield stages, lake
    finally:
        forget_targets(lake)


def landing_count(lake: Path) -> int:
    with duckdb.connect() as connection:
        return connection.execute(
            "select count(distinct id) from read_parquet(?, union_by_name = true)",
            [str(lake_layout.raw_dir(lake, "exams") / "**" / "*.parquet")],
        ).fetchone()[0]


def test_synthetic_deliveries_build_incrementally_on_both_engines(synthetic_stages):
    stages, _ = synthetic_stages
    for engine in ("duckdb", "spark"):
        modes = [stage[engine].plan.mode for stage in stages]
        assert modes == ["first build", "incremental", "incremental"], engine
        assert all(not {"error", "fail"} & set(stage[engine].status_counts) for stage in stages)


def test_every_stage_has_equal_marts_on_both_engines(synthetic_stages):
    stages, _ = synthetic_stages
    for number, stage in enumerate(stages):
        assert_engines_agree(stage["engines"], f"stage {number}")
    rows = [stage["engines"]["fct_exams"]["rows"] for stage in stages]
    assert rows[0] < rows[1] < rows[2]  # each delivery brought new exams


def test_incremental_builds_under_berlin_time_equal_a_full_refresh(synthetic_stages):
    stages, _ = synthetic_stages
    for number, stage in enumerate(stages):
        # Spark's incremental marts against DuckDB's full refresh (DuckDB's incremental = Spark's, above)
        assert_engines_agree(stage["spark_vs_full_refresh"], f"stage {number}, against a DuckDB full refresh")
        # nothing silently skipped: every delivered exam id is in the marts (plus lineage-keyed exams)
        assert stage["engines"]["fct_exams"]["rows"] >= stage["landed_exams"], number


def test_synthetic_analyst_answers_equal_on_both_engines(synthetic_stages):
    _, lake = synthetic_stages
    months = ("2021-10", "2021-11", "2021-12", "2022-01")
    duck, on_spark = analyst_answers(lake, "duckdb", months), analyst_answers(lake, "spark", months)
    assert on_spark == duck
    assert any(answer[0]["count"] for key, answer in duck.items() if key.startswith("covid"))


def test_redeliveries_replaced_partitions_on_spark(synthetic_stages):
    _, lake = synthetic_stages
    with spark.open_marts(lake) as connection:
        redelivered = connection.execute("select count(*) from marts.fct_exams where delivery_count >= 2").fetchone()
        assert redelivered[0] > 0
        leftovers = connection.execute(
            "select count(*) from (select exam_key from marts.fct_exams group by exam_key having count(*) > 1)"
        ).fetchone()[0]
        assert leftovers == 0
    # the side tables of the plain-Parquet rewrite are gone
    tables = {entry.name for entry in (spark.warehouse_dir(lake)).rglob("*__medlake_*")}
    assert tables == set()


def test_a_copied_lake_never_writes_into_the_originals_spark_tables(synthetic_stages, tmp_path):
    _, lake = synthetic_stages
    copy = tmp_path / "copy"
    shutil.copytree(lake, copy)
    reason = spark.reset_if_foreign(copy)
    assert reason is not None and str(lake) in reason
    assert not spark.metastore_dir(copy).exists() and spark.metastore_dir(lake).is_dir()
    assert set(MARTS) <= set(spark.mart_tables(lake))
