"""``medlake query`` on the real sample: the analysts' answers, through the CLI and the module,
and the dbt analyses (analyses/*.sql) giving the same answers as queries.py."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from medlake.cli import main
from medlake.errors import QueryError
from medlake.lake import layout as lake
from medlake.warehouse import dbt_runner, queries


def run_cli(capsys, *argv: str) -> dict:
    exit_code = main(["query", *argv, "--format", "json"])
    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    return json.loads(captured.out)


def test_covid_without_pneumonia_by_exam_month_is_zero_in_december(built_sample_lake, capsys):
    answer = run_cli(capsys, "covid-without-pneumonia", "--lake", str(built_sample_lake), "--month", "2021-12")
    assert answer["count"] == 0 and answer["exam_ids"] == []
    assert answer["date_basis"] == "exam"


def test_covid_without_pneumonia_by_label_month_is_exam_58(built_sample_lake, capsys):
    answer = run_cli(
        capsys,
        "covid-without-pneumonia",
        "--lake",
        str(built_sample_lake),
        "--month",
        "2021-12",
        "--date-basis",
        "label",
    )
    assert answer["count"] == 1 and answer["exam_ids"] == [58]


def test_covid_without_pneumonia_in_the_publication_month(built_sample_lake):
    # every sample exam was published on 2021-07-22 and none has a Pneumonia label: all Covid-positive exams count
    answer = queries.covid_without_pneumonia(built_sample_lake, month="2021-07", date_basis="exam")
    covid_positive = _scalar(
        built_sample_lake,
        "select count(distinct exam_key) from marts.bridge_exam_labels where label = 'Covid' and is_positive",
    )
    assert answer.count == covid_positive == 41
    assert len(answer.exam_ids) == len(answer.exam_keys) == 41
    assert f"count       {answer.count}" in answer.render()


def test_chest_exams_with_more_than_five_labels(built_sample_lake, capsys):
    answer = run_cli(capsys, "chest-many-labels", "--lake", str(built_sample_lake))
    assert answer["count"] == 10
    sample = answer["sample"]
    assert len(sample) == 10  # default limit 20 > 10 matches
    for exam in sample:
        assert exam["body_part"] == "Chest"
        assert exam["label_count"] >= 6
        assert len(exam["labels"]) == exam["label_count"]
        assert exam["image_uri"].startswith("gs://test-bucket-neu/sedi_xray/")
        assert exam["file_name"] == exam["image_uri"].rsplit("/", 1)[1]
        assert exam["is_file_available"] is False  # the sample ships no images
        assert {"modality", "rows", "columns", "exam_key", "exam_id"} <= exam.keys()
    assert [exam["exam_key"] for exam in sample] == sorted(exam["exam_key"] for exam in sample)


def test_chest_sample_is_deterministic_and_limited(built_sample_lake):
    first = queries.chest_many_labels(built_sample_lake, body_part="chest", min_labels=6, limit=3)
    second = queries.chest_many_labels(built_sample_lake, body_part="Chest", min_labels=6, limit=3)
    assert first.count == second.count == 10
    assert first.sample == second.sample and len(first.sample) == 3
    stricter = queries.chest_many_labels(built_sample_lake, body_part="Chest", min_labels=9, limit=20)
    assert 0 < stricter.count < 10
    assert all(exam["label_count"] >= 9 for exam in stricter.sample)
    assert "Exams of body part 'Chest' with at least 9 labels" in stricter.render()


@pytest.mark.parametrize(
    ("variables", "expected_ids"),
    [
        ({"month": "2021-12", "date_basis": "exam"}, []),
        ({"month": "2021-12", "date_basis": "label"}, [58]),
        ({"month": "2021-07", "date_basis": "exam"}, None),  # None: whatever queries.py says (41 exams)
    ],
)
def test_covid_analysis_matches_queries_module(built_sample_lake, variables, expected_ids):
    compiled = dbt_runner.compile_analysis(built_sample_lake, "covid_without_pneumonia", variables=variables)
    from_analysis = [exam_id for exam_id, _ in _rows(built_sample_lake, compiled)]
    from_module = queries.covid_without_pneumonia(built_sample_lake, **variables)
    assert sorted(from_analysis, key=str) == sorted(from_module.exam_ids, key=str)
    assert len(from_analysis) == from_module.count
    if expected_ids is not None:
        assert from_analysis == expected_ids


def test_chest_analysis_matches_queries_module(built_sample_lake):
    compiled = dbt_runner.compile_analysis(
        built_sample_lake, "chest_many_labels", variables={"body_part": "Chest", "min_labels": 6}
    )
    exam_keys = [row[1] for row in _rows(built_sample_lake, compiled)]
    module = queries.chest_many_labels(built_sample_lake, body_part="Chest", min_labels=6, limit=100)
    assert len(exam_keys) == module.count == 10
    assert exam_keys == [exam["exam_key"] for exam in module.sample]


def test_query_without_a_warehouse_tells_the_user_to_build(tmp_path, capsys):
    lake_dir = tmp_path / "lake"
    lake.init_lake(lake_dir)  # landed-looking lake, but never built
    exit_code = main(["query", "covid-without-pneumonia", "--lake", str(lake_dir), "--month", "2021-12"])
    captured = capsys.readouterr()
    assert exit_code == 1
    assert "no warehouse" in captured.err and "medlake build" in captured.err and "medlake land" in captured.err
    with pytest.raises(QueryError, match="no warehouse"):
        queries.chest_many_labels(tmp_path / "missing", body_part="Chest", min_labels=6, limit=5)


def test_query_on_a_warehouse_without_marts_tells_the_user_to_build(tmp_path):
    lake_dir = tmp_path / "lake"
    lake.init_lake(lake_dir)
    duckdb.connect(str(lake.warehouse_path(lake_dir))).close()  # an empty warehouse file
    with pytest.raises(QueryError, match="medlake build"):
        queries.covid_without_pneumonia(lake_dir, month="2021-12", date_basis="exam")


def test_bad_arguments_are_query_errors(built_sample_lake):
    with pytest.raises(QueryError, match="YYYY-MM"):
        queries.covid_without_pneumonia(built_sample_lake, month="2021-13", date_basis="exam")
    with pytest.raises(QueryError, match="date_basis"):
        queries.covid_without_pneumonia(built_sample_lake, month="2021-12", date_basis="report")
    with pytest.raises(QueryError, match="min_labels"):
        queries.chest_many_labels(built_sample_lake, body_part="Chest", min_labels=0, limit=5)


def test_month_bounds_cover_the_whole_month():
    assert [d.isoformat() for d in queries.month_bounds("2021-12")] == ["2021-12-01", "2022-01-01"]
    assert [d.isoformat() for d in queries.month_bounds("2024-02")] == ["2024-02-01", "2024-03-01"]


def _rows(lake_dir: Path, statement: str) -> list[tuple]:
    with duckdb.connect(str(lake.warehouse_path(lake_dir)), read_only=True) as connection:
        return connection.execute(statement).fetchall()


def _scalar(lake_dir: Path, statement: str):
    [(value,)] = _rows(lake_dir, statement)
    return value
