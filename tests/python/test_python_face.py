"""``medlake.open(LAKE)``: the Python face, on the real sample's built lake."""

from __future__ import annotations

import shutil

import duckdb
import pytest

import medlake
from medlake.errors import QueryError


def test_open_answers_sql_as_a_dataframe_and_as_arrow(built_sample_lake):
    with medlake.open(built_sample_lake) as lake:
        assert {"fct_exams", "dim_images", "fct_model_runs"} <= set(lake.marts)
        frame = lake.sql("select count(*) as exams from marts.fct_exams")
        assert int(frame["exams"][0]) == 122  # the real sample's 122 exams
        table = lake.sql("select exam_key from marts.fct_exams order by exam_key", output="arrow")
        assert table.num_rows == 122 and table.column_names == ["exam_key"]
        with_params = lake.sql("select count(*) as n from marts.fct_exams where exam_key = ?", [table[0][0].as_py()])
        assert int(with_params["n"][0]) == 1
        assert len(lake.table("dim_labels")) > 0


def test_the_handle_is_read_only_and_errors_are_one_line(built_sample_lake, tmp_path):
    lake_dir = tmp_path / "lake"
    shutil.copytree(built_sample_lake, lake_dir)
    lake = medlake.open(lake_dir)
    with pytest.raises(QueryError, match=r"query failed: .*read-only"):
        lake.sql("delete from marts.fct_exams")
    with pytest.raises(QueryError, match="no mart 'nope'"):
        lake.table("nope")
    lake.close()
    connection = duckdb.connect(str(lake_dir / "medlake.duckdb"), read_only=True)
    assert connection.execute("select count(*) from marts.fct_exams").fetchone()[0] == 122
    connection.close()
    with pytest.raises(QueryError, match="no warehouse at"):
        medlake.open(tmp_path / "not-a-lake")


def test_export_from_python_writes_a_training_set(built_sample_lake, tmp_path):
    with medlake.open(built_sample_lake) as lake:
        summary = lake.export(tmp_path / "training_set", labels="Covid, Pneumonia", body_part="Chest")
    assert summary.rows > 0 and (tmp_path / "training_set" / "manifest.parquet").is_file()
    assert "medlake.open(" in (tmp_path / "training_set" / "dataset.json").read_text()
