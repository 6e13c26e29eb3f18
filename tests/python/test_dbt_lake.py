"""The dbt project on real lakes: the real sample, an empty lake, a synthetic delivery, re-deliveries.

Every test reads the marts from the DuckDB file that a real ``dbt build`` (through
``medlake.dbt_runner``) wrote; nothing is mocked. Builds are the slow part (seconds each), so
lakes are built once per module and tests only read them.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from lakehelpers import MARTS, exam_record, label_record, land_and_build, mart_counts, scalar, sql
from medlake.devtools import synth
from medlake.errors import DbtError
from medlake.lake import landing
from medlake.lake import layout as lake
from medlake.lake.raw_schema import RAW_TABLES
from medlake.warehouse import dbt_runner, queries


@pytest.fixture
def forget_target():
    """Remove the per-lake dbt target dirs a test created under the repo's target/."""
    lakes: list[Path] = []
    yield lakes.append
    for lake_dir in lakes:
        shutil.rmtree(dbt_runner.target_path_for(lake_dir), ignore_errors=True)


# --- the real sample ---------------------------------------------------------------------


def test_sample_marts_have_one_row_per_exam_label_and_report(built_sample_lake):
    counts = mart_counts(built_sample_lake)
    assert counts["fct_exams"] == 122
    assert counts["bridge_exam_labels"] == 545
    assert counts["fct_medical_reports"] == 122
    assert counts["dim_images"] == 122  # every exam has its own image_path
    assert counts["fct_predictions"] == counts["fct_model_runs"] == 0  # no PACS run yet
    assert scalar(built_sample_lake, "select count(distinct exam_key) from marts.fct_exams") == 122


def test_every_sample_report_names_the_wrong_exam_and_is_flagged(built_sample_lake):
    rows = sql(
        built_sample_lake,
        "select reported_exam_id, paired_exam_id, is_exam_id_mismatch, exam_key is not null "
        "from marts.fct_medical_reports",
    )
    assert len(rows) == 122
    assert all(mismatch and paired for _, _, mismatch, paired in rows)
    # the sender's off-by-one: the report names exam id + 1 (except the exam that has no id)
    with_id = [(reported, paired) for reported, paired, _, _ in rows if paired is not None]
    assert len(with_id) == 121
    assert all(reported == paired + 1 for reported, paired in with_id)
    assert scalar(built_sample_lake, "select count(*) from marts.fct_exams where has_medical_report") == 122
    findings = scalar(
        built_sample_lake, "select count(*) from marts.fct_data_quality where finding_type = 'report_exam_id_mismatch'"
    )
    assert findings == 122


def test_body_parts_are_canonical_title_case(built_sample_lake):
    body_parts = dict(
        sql(built_sample_lake, "select body_part_raw, any_value(body_part) from marts.fct_exams group by 1")
    )
    assert body_parts["CHEST"] == "Chest"
    assert body_parts["LOW_EXM"] == "Lower Extremity"
    assert body_parts["LSPINE"] == "Lumbar Spine"
    assert scalar(built_sample_lake, "select count(*) from marts.fct_exams where body_part = 'Chest'") == 21
    assert scalar(built_sample_lake, "select count(*) from marts.fct_exams where body_part = 'CHEST'") == 0
    assert scalar(built_sample_lake, "select count(*) from marts.fct_exams where is_unmapped_body_part") == 0
    # the one exam without body_part is kept, flagged, with no invented value
    assert sql(built_sample_lake, "select body_part from marts.fct_exams where is_missing_body_part") == [(None,)]


def test_labels_are_canonical_and_counted(built_sample_lake):
    labels = dict(sql(built_sample_lake, "select label, count(*) from marts.bridge_exam_labels group by 1"))
    assert labels == {"Covid": 93, "Edema": 119, "Hernia": 102, "Mass": 109, "Tumor": 122}
    assert scalar(built_sample_lake, "select bool_and(is_label_mapped) from marts.bridge_exam_labels")
    raw = sql(built_sample_lake, "select distinct label_raw from marts.bridge_exam_labels where label = 'Covid'")
    assert raw == [("covid19",)]
    vocabulary = dict(sql(built_sample_lake, "select label, is_in_vocabulary from marts.dim_labels"))
    assert vocabulary["Covid"] is True and vocabulary["Pneumonia"] is True
    label_totals = sql(
        built_sample_lake,
        "select sum(label_count), sum(positive_label_count) from marts.fct_exams",
    )
    assert label_totals == [(545, 283)]


def test_exam_without_id_is_kept_keyed_by_its_lineage(built_sample_lake):
    rows = sql(
        built_sample_lake,
        "select exam_key, exam_id, source_file, record_position, label_count from marts.fct_exams "
        "where is_missing_exam_id",
    )
    assert len(rows) == 1
    exam_key, exam_id, source_file, record_position, label_count = rows[0]
    assert exam_id is None and label_count == 6
    expected_key = scalar(built_sample_lake, "select md5(?)", [f"lineage|{source_file}|{record_position}"])
    assert exam_key == expected_key
    assert scalar(built_sample_lake, "select md5('exam_id|12')") == scalar(
        built_sample_lake, "select exam_key from marts.fct_exams where exam_id = 12"
    )


def test_publication_timestamp_becomes_utc_timestamp(built_sample_lake):
    # exam 12 was published at epoch 1626971804.163436 (file 0013642c-...json)
    published_at = scalar(built_sample_lake, "select published_at from marts.fct_exams where exam_id = 12")
    assert published_at == dt.datetime(2021, 7, 22, 16, 36, 44, 163436)
    types = dict(
        sql(
            built_sample_lake,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'marts' and table_name = 'fct_exams'",
        )
    )
    assert types["published_at"] == "TIMESTAMP" and types["exam_id"] == "BIGINT" and types["label_count"] == "INTEGER"


def test_contradictory_labels_are_visible_as_findings(built_sample_lake):
    # exam 12 asserts covid19 both true and false
    flagged = scalar(built_sample_lake, "select has_contradictory_labels from marts.fct_exams where exam_id = 12")
    assert flagged is True
    findings = sql(
        built_sample_lake,
        "select finding_type, count(*) from marts.fct_data_quality group by 1 order by 1",
    )
    findings = dict(findings)
    assert findings["missing_exam_id"] == 1 and findings["missing_body_part"] == 1
    assert findings["contradictory_labels"] == scalar(
        built_sample_lake, "select count(*) from marts.fct_exams where has_contradictory_labels"
    ) + scalar(
        built_sample_lake,
        # an exam can contradict itself on more than one label
        "select count(*) - count(distinct exam_key) from marts.fct_data_quality "
        "where finding_type = 'contradictory_labels'",
    )


# --- re-landing, re-delivery and the PACS tables ------------------------------------------

REDELIVERED_AT = 1638662400.0  # 2021-12-05T00:00:00Z: later than every sample publication
OLDER_THAN_SAMPLE = 1600000000.0  # 2020-09-13: earlier than every sample publication


def _write_redelivery(delivery: Path, image_uri_58: str) -> None:
    (delivery / "exam").mkdir(parents=True)
    (delivery / "medical_report").mkdir()
    # exam 58, re-delivered later (same image) with different labels: they replace the old ones
    new_labels = [label_record("Pneumonia", "True", "2021-12-05"), label_record("hernia", False, "2021-12-05")]
    exam_58 = exam_record(58, REDELIVERED_AT, new_labels, image_uri_58)
    # exam 12, re-delivered with an OLDER publication: it must not win
    exam_12 = exam_record(12, OLDER_THAN_SAMPLE, [label_record("covid", True, "2020-09-01")], "gs://redelivery/12.dcm")
    (delivery / "exam" / "redelivery.json").write_text(json.dumps([exam_58, exam_12]))
    report = {"content": {"exam_id": 58, "report_date": "2021-12-06", "reported_by": "Dr. R", "text": "Pneumonia."}}
    (delivery / "medical_report" / "redelivery.json").write_text(json.dumps([report]))


def _write_pacs_run(lake_dir: Path, file_name: str) -> None:
    """One PACS run over exam 58's image, as `medlake pacs run` would land it (raw tables)."""
    now = dt.datetime(2021, 12, 10, 12, 0, tzinfo=dt.UTC)
    day = now.date()
    lineage = {
        "landing_run_id": "test-images",
        "delivery_date": day,
        "ingested_at": now,
        "source_file": f"images/{file_name}",
        "source_file_sha256": "0" * 64,
    }
    sop = "1.2.826.0.1.3680043.10.1.58"
    tables = {
        "image_files": [
            {**lineage, "file_name": file_name, "size_bytes": 1234, "media_type": "application/dicom", "is_dicom": True}
        ],
        "dicom_instances": [
            {
                **lineage,
                "file_name": file_name,
                "has_file_meta": True,
                "patient_id": "P58",
                "study_instance_uid": "1.2.826.0.1.3680043.10.2.58",
                "series_instance_uid": "1.2.826.0.1.3680043.10.3.58",
                "sop_instance_uid": sop,
                "modality": "CR",
                "body_part_examined": "CHEST",
                "study_date": "20211201",
                "rows": 512,
                "columns": 480,
            }
        ],
        "pacs_uploads": [
            {
                "run_id": "run-1",
                "kind": "image",
                "file_name": file_name,
                "sop_instance_uid": sop,
                "orthanc_instance_id": "orthanc-img-58",
                "status": "Success",
                "uploaded_at": now,
            },
            {
                "run_id": "run-1",
                "kind": "sr",
                "sop_instance_uid": "1.2.826.0.1.3680043.10.9.58",
                "orthanc_instance_id": "orthanc-sr-58",
                "status": "Success",
                "referenced_sop_instance_uid": sop,
                "uploaded_at": now,
            },
        ],
        "predictions": [
            {
                "run_id": "run-1",
                "sop_instance_uid": sop,
                "file_name": file_name,
                "pathology": pathology,
                "score": score,
                "threshold": 0.5,
                "is_positive": score >= 0.5,
                "model_name": "densenet121-res224-all",
                "model_version": "1.5.7",
                "weights_sha256": "f" * 64,
                "weights_trained": False,
                "sr_sop_instance_uid": "1.2.826.0.1.3680043.10.9.58",
                "predicted_at": now,
                "sr_status": "stored",
                "gate_flags": "view_absent",
            }
            for pathology, score in (("Pneumonia", 0.81), ("Effusion", 0.2), ("Lung Opacity", 0.64))
        ],
        "model_runs": [
            {
                "run_id": "run-1",
                "model_name": "densenet121-res224-all",
                "model_version": "1.5.7",
                "weights_sha256": "f" * 64,
                "weights_trained": False,
                "device": "cpu",
                "started_at": now,
                "finished_at": now,
                "images_total": 2,
                "images_ok": 1,
                "images_failed": 1,
                "total_s": 3.5,
                "medlake_version": "0.1.0",
                "run_kind": "run",
                "run_status": "finished",
                "gate_policy": '{"allowed_views": ["AP", "PA"]}',
            }
        ],
        "pacs_gate_decisions": [
            {
                "run_id": "run-1",
                "source": f"images/{file_name}",
                "file_name": file_name,
                "sop_instance_uid": sop,
                "modality": "CR",
                "body_part_examined": "CHEST",
                "decision": "accepted",
                "gate_flags": "view_absent",
                "decided_at": now,
            },
            {
                "run_id": "run-1",
                "source": "images/lateral.dcm",
                "file_name": "lateral.dcm",
                "sop_instance_uid": "1.2.826.0.1.3680043.10.1.59",
                "modality": "DX",
                "body_part_examined": "TÓRAX",
                "view_position": "LL",
                "decision": "skipped",
                "reason_code": "view",
                "reason_detail": "ViewPosition LL: the model reads frontal (PA/AP) views",
                "decided_at": now,
            },
        ],
    }
    for table, rows in tables.items():
        lake.write_part(lake_dir, table, pa.Table.from_pylist(rows, schema=RAW_TABLES[table]), day, "test-pacs")


@pytest.fixture(scope="module")
def redelivered_lake(built_sample_lake, neuralmed_dir, tmp_path_factory):
    """A copy of the built sample lake: the sample landed again and rebuilt, then a re-delivery and a PACS run."""
    lake_dir = tmp_path_factory.mktemp("redelivered") / "lake"
    shutil.copytree(built_sample_lake, lake_dir)
    before = mart_counts(built_sample_lake)

    relanded = landing.land(neuralmed_dir, lake_dir, delivery_date=None, workers=None, progress=False)
    dbt_runner.build(lake_dir, full_refresh=False, select=None, docs=False, quiet=True)
    after_reland = mart_counts(lake_dir)

    [(image_58, image_uri_58)] = sql(
        lake_dir, "select image_file_name, image_uri from marts.fct_exams where exam_id = 58"
    )
    delivery = tmp_path_factory.mktemp("redelivery")
    _write_redelivery(delivery, image_uri_58)
    _write_pacs_run(lake_dir, image_58)
    land_and_build(delivery, lake_dir)
    yield {"lake": lake_dir, "before": before, "after_reland": after_reland, "relanded": relanded, "image": image_58}
    shutil.rmtree(dbt_runner.target_path_for(lake_dir), ignore_errors=True)


def test_landing_the_sample_again_and_rebuilding_changes_nothing(redelivered_lake):
    relanded = redelivered_lake["relanded"].to_dict()
    assert sum(relanded["files_landed"].values()) == 0 and sum(relanded["rows_landed"].values()) == 0
    assert redelivered_lake["after_reland"] == redelivered_lake["before"]


def test_redelivered_exam_with_later_publication_replaces_labels(redelivered_lake, built_sample_lake):
    lake_dir = redelivered_lake["lake"]
    assert scalar(lake_dir, "select count(*) from marts.fct_exams") == 122
    exam = sql(
        lake_dir,
        "select delivery_count, source_file, label_count, published_at, body_part from marts.fct_exams "
        "where exam_id = 58",
    )
    assert exam == [(2, "exam/redelivery.json", 2, dt.datetime(2021, 12, 5), "Chest")]
    labels = sql(
        lake_dir,
        "select label, is_positive, label_raw from marts.bridge_exam_labels b join marts.fct_exams e using (exam_key) "
        "where e.exam_id = 58 order by label_position",
    )
    assert labels == [("Pneumonia", True, "Pneumonia"), ("Hernia", False, "hernia")]
    # the old delivery's labels are gone, not merged: the bridge lost them and gained the 2 new ones
    old_label_count = scalar(built_sample_lake, "select label_count from marts.fct_exams where exam_id = 58")
    assert old_label_count > 2
    assert scalar(lake_dir, "select count(*) from marts.bridge_exam_labels") == 545 - old_label_count + 2


def test_redelivery_with_older_publication_does_not_win(redelivered_lake, built_sample_lake):
    lake_dir = redelivered_lake["lake"]
    query = (
        "select delivery_count, source_file, label_count, positive_label_count from marts.fct_exams where exam_id = 12"
    )
    [(count, source_file, label_count, positive)] = sql(lake_dir, query)
    [(_, original_file, original_count, original_positive)] = sql(built_sample_lake, query)
    assert count == 2
    assert (source_file, label_count, positive) == (original_file, original_count, original_positive)


def test_redelivery_changes_the_query_answer(redelivered_lake, built_sample_lake):
    before = queries.covid_without_pneumonia(built_sample_lake, month="2021-12", date_basis="label")
    after = queries.covid_without_pneumonia(redelivered_lake["lake"], month="2021-12", date_basis="label")
    assert before.exam_ids == (58,)
    assert after.count == 0  # exam 58's new labels: Pneumonia positive, no Covid


def test_report_of_the_redelivery_pairs_without_mismatch(redelivered_lake):
    lake_dir = redelivered_lake["lake"]
    assert scalar(lake_dir, "select count(*) from marts.fct_medical_reports") == 123
    assert scalar(lake_dir, "select count(*) from marts.fct_medical_reports where is_exam_id_mismatch") == 122
    paired = sql(
        lake_dir,
        "select r.is_exam_id_mismatch, e.exam_id from marts.fct_medical_reports r "
        "join marts.fct_exams e on r.exam_key = e.exam_key where r.source_file = 'medical_report/redelivery.json'",
    )
    assert paired == [(False, 58)]


def test_pacs_run_reaches_images_predictions_and_runs(redelivered_lake):
    lake_dir, image = redelivered_lake["lake"], redelivered_lake["image"]
    [row] = sql(
        lake_dir,
        "select is_file_available, modality, pixel_rows, pixel_columns, study_date, is_in_pacs, has_sr, "
        "orthanc_instance_id, prediction_count, exam_count from marts.dim_images where file_name = ?",
        [image],
    )
    assert row == (True, "CR", 512, 480, dt.date(2021, 12, 1), True, True, "orthanc-img-58", 3, 1)
    predictions = dict(sql(lake_dir, "select pathology, label from marts.fct_predictions where run_id = 'run-1'"))
    assert predictions == {"Pneumonia": "Pneumonia", "Effusion": "Pleural Effusion", "Lung Opacity": "Lung Opacity"}
    assert (
        scalar(
            lake_dir,
            "select count(*) from marts.fct_predictions p join marts.fct_exams e using (image_key) "
            "where e.exam_id = 58",
        )
        == 3
    )
    [run] = sql(
        lake_dir,
        "select prediction_count, images_predicted, images_stored, srs_stored, failure_rate, weights_trained, "
        "run_date from marts.fct_model_runs",
    )
    assert run == (3, 1, 1, 1, 0.5, False, dt.date(2021, 12, 10))
    [gate] = sql(
        lake_dir, "select images_skipped, images_flagged, images_already_reported, run_kind from marts.fct_model_runs"
    )
    assert gate == (1, 1, 0, "run")
    decisions = sql(
        lake_dir,
        "select file_name, gate_decision, skip_reason_code, body_part from marts.fct_gate_decisions order by 1",
    )
    # TÓRAX maps to Chest through the same body_part_taxonomy seed the gate reads.
    assert decisions == [(image, "accepted", None, "Chest"), ("lateral.dcm", "skipped", "view", "Chest")]
    assert {row[0] for row in sql(lake_dir, "select sr_status from marts.fct_predictions")} == {"stored"}

    result = queries.exams_with_predictions(lake_dir, limit=5)
    assert result.count == 1
    [exam] = result.to_dict()["sample"]
    assert exam["exam_id"] == 58
    assert exam["labelled_positive_labels"] == ["Pneumonia"]
    assert exam["predicted_positive_labels"] == ["Lung Opacity", "Pneumonia"]
    assert [s["label"] for s in exam["top_scores"]] == ["Pneumonia", "Lung Opacity", "Pleural Effusion"]
    assert "UNTRAINED" in result.render()


# --- other lakes -------------------------------------------------------------------------


def test_empty_lake_builds_every_mart_with_zero_rows(tmp_path, forget_target):
    lake_dir = tmp_path / "lake"
    forget_target(lake_dir)
    summary = dbt_runner.build(lake_dir, full_refresh=False, select=None, docs=False, quiet=True)
    assert summary.plan.mode == "first build"
    assert summary.status_counts.get("error", 0) == 0 and summary.node_count > 60
    assert (lake_dir / "raw" / "exams" / "schema.parquet").is_file()  # build initialised the lake
    assert mart_counts(lake_dir) == dict.fromkeys(MARTS, 0) | {"dim_labels": summary_vocabulary_size(lake_dir)}
    answer = queries.covid_without_pneumonia(lake_dir, month="2021-12", date_basis="exam")
    assert answer.count == 0 and answer.exam_ids == ()


def summary_vocabulary_size(lake_dir: Path) -> int:
    # an empty lake still has the label vocabulary from the seed, and nothing else
    assert scalar(lake_dir, "select bool_and(is_in_vocabulary) from marts.dim_labels")
    return scalar(lake_dir, "select count(*) from reference.label_vocabulary")


@pytest.mark.slow
def test_synthetic_delivery_matches_its_ground_truth(tmp_path, forget_target):
    delivery, lake_dir = tmp_path / "delivery", tmp_path / "lake"
    forget_target(lake_dir)
    synth.generate(delivery, exams=3000, seed=11, dicom_exams=4, progress=False)
    truth = json.loads((delivery / synth.SUMMARY_FILE).read_text())
    land_and_build(delivery, lake_dir)

    exams = truth["distinct_exam_ids"] + truth["exams_without_id"]
    assert scalar(lake_dir, "select count(*) from marts.fct_exams") == exams
    assert (
        scalar(lake_dir, "select count(*) from marts.fct_exams where is_missing_exam_id") == truth["exams_without_id"]
    )
    assert scalar(lake_dir, "select sum(delivery_count - 1) from marts.fct_exams") == truth["redelivered_records"]
    assert scalar(lake_dir, "select count(*) from marts.bridge_exam_labels") == truth["label_objects_latest"]
    assert (
        scalar(lake_dir, "select count(*) from marts.fct_medical_reports where is_exam_id_mismatch")
        == truth["report_exam_id_mismatches"]
    )
    assert (
        scalar(lake_dir, "select count(*) from marts.fct_exams where body_part = 'Chest' and label_count >= 6")
        == (truth["chest_exams_with_6plus_labels"])
    )
    for month, expected in truth["covid_without_pneumonia_by_month"].items():
        assert queries.covid_without_pneumonia(lake_dir, month=month, date_basis="exam").count == expected, month
    assert scalar(lake_dir, "select count(*) from marts.fct_exams where body_part in ('CHEST', 'chest')") == 0
    assert scalar(lake_dir, "select count(distinct label_raw) from marts.bridge_exam_labels where label = 'Covid'") > 1
    # its DICOMs are on disk: the referenced images are available with their headers
    available = scalar(
        lake_dir, "select count(*) from marts.dim_images where is_file_available and modality is not null"
    )
    assert available == 4
    quarantined = scalar(
        lake_dir, "select count(*) from marts.fct_data_quality where finding_type like 'quarantined_%'"
    )
    assert quarantined == truth["quarantine_rows_expected"]


def test_failing_test_raises_dbt_error_naming_the_node(tmp_path, forget_target):
    lake_dir = tmp_path / "lake"
    forget_target(lake_dir)
    lake.init_lake(lake_dir)
    record = {
        "landing_run_id": "run-a",
        "delivery_date": dt.date(2021, 12, 1),
        "ingested_at": dt.datetime(2021, 12, 1, tzinfo=dt.UTC),
        "source_file": "exam/a.json",
        "source_file_sha256": "a" * 64,
        "record_position": 0,
        "id": "1",
        "labels_state": "list",
        "label_entry_count": 0,
    }
    # the same record twice under one landing run: a broken raw layer the source's grain test must catch
    for batch in ("one", "two"):
        rows = pa.Table.from_pylist([record], schema=RAW_TABLES["exams"])
        lake.write_part(lake_dir, "exams", rows, dt.date(2021, 12, 1), batch)
    with pytest.raises(DbtError, match="source_unique_combination_of_columns_neuralmed_exams"):
        dbt_runner.build(lake_dir, full_refresh=False, select="source:neuralmed.exams", docs=False, quiet=True)


def test_each_lake_gets_its_own_dbt_target(tmp_path):
    first, second = tmp_path / "a" / "lake", tmp_path / "b" / "lake"
    assert dbt_runner.target_path_for(first) != dbt_runner.target_path_for(second)
    assert dbt_runner.target_path_for(first) == dbt_runner.target_path_for(tmp_path / "a" / ".." / "a" / "lake")
    assert dbt_runner.target_path_for(first).parent == dbt_runner.PROJECT_DIR / "target" / "lakes"
