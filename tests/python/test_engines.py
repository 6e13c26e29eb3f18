"""Choosing the engine, and the Spark warehouse's bookkeeping, without starting Spark (fast).

The builds themselves on both engines are in test_spark_engine.py.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from medlake import cli
from medlake.errors import EngineError
from medlake.lake import layout as lake_layout
from medlake.warehouse import build_state, dbt_runner, engines, spark


def a_state(lake: Path) -> build_state.BuildState:
    return build_state.BuildState(
        project_fingerprint="f" * 64,
        lake_path=str(lake),
        landed_until=dt.datetime(2026, 11, 30, 1, 2, 3, 456789),
        pacs_signature="p" * 64,
        built_at=dt.datetime(2026, 11, 30, 1, 5, 0),
        full_refresh=False,
    )


def fake_spark_warehouse(lake: Path, built_for: Path | None) -> None:
    """What a Spark build leaves in a lake: a metastore, a table folder and (when finished) a record."""
    (spark.metastore_dir(lake) / "seg0").mkdir(parents=True)
    spark.table_dir(lake, "marts", "fct_exams").mkdir(parents=True)
    if built_for is not None:
        spark.write_state(lake, a_state(built_for))


def test_engines_have_their_own_target_and_target_dir(tmp_path):
    duckdb_engine, spark_engine = engines.get("duckdb"), engines.get("spark")
    assert (duckdb_engine.dbt_target, spark_engine.dbt_target) == ("dev", "spark")
    assert dbt_runner.target_path_for(tmp_path, "spark") == Path(f"{dbt_runner.target_path_for(tmp_path)}-spark")
    assert duckdb_engine.warehouse(tmp_path) == lake_layout.warehouse_path(tmp_path)
    assert spark_engine.warehouse(tmp_path) == tmp_path / "spark"
    # Spark's fingerprint covers its adapter and the raw schema its tables are made from
    assert spark_engine.project_fingerprint(dbt_runner.PROJECT_DIR) != duckdb_engine.project_fingerprint(
        dbt_runner.PROJECT_DIR
    )


def test_an_unknown_engine_is_a_clear_error():
    with pytest.raises(EngineError, match="unknown engine 'trino'"):
        engines.get("trino")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["build", "--engine", "trino"])


def test_spark_build_record_round_trips(tmp_path):
    state = a_state(tmp_path)
    spark.spark_dir(tmp_path).mkdir()
    spark.write_state(tmp_path, state)
    assert spark.read_state(tmp_path) == state
    (spark.spark_dir(tmp_path) / spark.STATE_FILE).write_text('{"from": "another medlake"}')
    assert spark.read_state(tmp_path) is None


def test_each_engine_plans_from_its_own_warehouse(tmp_path):
    lake = tmp_path / "lake"
    lake_layout.init_lake(lake)
    assert dbt_runner.plan_build(lake, full_refresh=False, engine="spark").mode == "first build"
    fake_spark_warehouse(lake, built_for=lake)
    plan = dbt_runner.plan_build(lake, full_refresh=False, engine="spark")
    assert plan.mode == "full refresh" and "changed" in plan.reason  # the record's fingerprint is not this project's
    assert dbt_runner.plan_build(lake, full_refresh=False, engine="duckdb").mode == "first build"


def test_a_copied_lake_drops_the_spark_metastore_it_came_with(tmp_path):
    original, copy = tmp_path / "original", tmp_path / "copy"
    fake_spark_warehouse(copy, built_for=original)
    reason = spark.reset_if_foreign(copy)
    assert reason is not None and str(original) in reason
    assert not spark.metastore_dir(copy).exists() and not spark.warehouse_dir(copy).exists()
    assert spark.read_state(copy) is None


def test_a_lake_keeps_its_own_spark_metastore(tmp_path):
    fake_spark_warehouse(tmp_path, built_for=tmp_path)
    assert spark.reset_if_foreign(tmp_path) is None
    assert spark.metastore_dir(tmp_path).is_dir() and spark.mart_tables(tmp_path) == ["fct_exams"]


def test_an_unfinished_first_spark_build_is_started_over(tmp_path):
    fake_spark_warehouse(tmp_path, built_for=None)
    assert "no build record" in spark.reset_if_foreign(tmp_path)
    assert not spark.metastore_dir(tmp_path).exists()


def test_spark_without_java_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(EngineError, match="openjdk-17-jre-headless"):
        spark.check_runtime()
    lake = tmp_path / "lake"
    code = cli.main(["build", "--lake", str(lake), "--engine", "spark", "--no-docs"])
    assert code == EngineError.exit_code
    err = capsys.readouterr().err
    assert "openjdk-17-jre-headless" in err and "Traceback" not in err
    assert not spark.metastore_dir(lake).exists()


def test_query_on_spark_marts_without_a_spark_build_tells_the_user_to_build(tmp_path, capsys):
    lake = tmp_path / "lake"
    lake_layout.init_lake(lake)
    arguments = ["query", "covid-without-pneumonia", "--lake", str(lake), "--month", "2021-12", "--engine", "spark"]
    code = cli.main(arguments)
    assert code != 0
    assert "--engine spark" in capsys.readouterr().err


@pytest.mark.skipif(os.environ.get("JAVA_HOME") is None and spark.java_executable() is None, reason="no Java")
def test_java_is_found_where_pyspark_looks(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert spark.java_executable() is not None
