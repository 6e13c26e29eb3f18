"""Incremental ``medlake build``: after new deliveries, the marts must be exactly what a full rebuild makes.

Each scenario lands a delivery into a built lake, builds incrementally, then copies the lake,
rebuilds the copy with ``--full-refresh`` and compares every mart row for row (EXCEPT ALL, both
ways). The deliveries carry new exams and re-deliveries of old ones: later and earlier
publications, a re-delivery with zero labels, one that moves to another image, a corrected
report file, a report without an exam, a broken file, report-only corrections and a PACS run.
Real dbt, real DuckDB files, real landing; builds take seconds, so lakes are shared per module.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from lakehelpers import (
    MARTS,
    build,
    exam_record,
    label_record,
    mart_counts,
    mart_differences,
    report_record,
    scalar,
    sql,
)
from medlake.devtools import synth
from medlake.errors import LakeError
from medlake.lake import landing
from medlake.lake import layout as lake
from medlake.lake.raw_schema import RAW_TABLES
from medlake.warehouse import build_state, dbt_runner

LATER = 1638662400.0  # 2021-12-05T00:00:00Z: later than every sample publication
EARLIER = 1600000000.0  # 2020-09-13: earlier than every sample publication
NEW_EXAM_ID = 900001


def assert_equals_full_refresh(lake_dir: Path, scratch: Path) -> dict[str, int]:
    """Rebuild a copy of ``lake_dir`` from scratch and require identical marts; returns the row counts."""
    full = scratch / "full_refresh_copy"
    shutil.copytree(lake_dir, full)
    try:
        summary = build(full, full_refresh=True)
        assert summary.plan.mode == "full refresh"
        differences = mart_differences(lake.warehouse_path(lake_dir), lake.warehouse_path(full))
        assert differences == dict.fromkeys(MARTS, (0, 0))
        return mart_counts(full)
    finally:
        shutil.rmtree(dbt_runner.target_path_for(full), ignore_errors=True)


# --- deliveries --------------------------------------------------------------------------


def write_delivery_a(delivery: Path, sample_dir: Path, sample: dict) -> None:
    """New exams plus re-deliveries of sample exams, with their reports, a corrected report file and bad files."""
    (delivery / "exam").mkdir(parents=True)
    (delivery / "medical_report").mkdir()
    exams = [
        # exam 58 wins with a later publication, new labels and ANOTHER image: its old image loses its only exam
        exam_record(
            58,
            LATER,
            [label_record("Pneumonia", "True"), label_record("hernia", False)],
            "gs://incremental/58-v2.dcm",
            "CHEST",
        ),
        # the exam without body part comes back later with one and NO labels: its old labels must go
        exam_record(sample["no_body_part_id"], LATER, [], sample["no_body_part_uri"], "CHEST"),
        # exam 12 re-delivered with an EARLIER publication: it must not win (but is delivered twice)
        exam_record(12, EARLIER, [label_record("covid", True, "2020-09-01")], "gs://incremental/12-old.dcm", "CHEST"),
        # a brand-new exam and a new exam without an id
        exam_record(
            NEW_EXAM_ID,
            LATER,
            [label_record("covid19", "true"), label_record("Effusion", "false")],
            "gs://incremental/n.dcm",
            "CHEST",
        ),
        exam_record(None, LATER, [label_record("tumor", True)], "gs://incremental/no-id.dcm", "BREAST"),
    ]
    (delivery / "exam" / "incremental_a.json").write_text(json.dumps(exams))
    reports = [
        report_record(58, "Pneumonia."),
        report_record(sample["no_body_part_id"], "Clear."),
        report_record(12, "Old."),
        report_record(NEW_EXAM_ID, "Covid."),
        report_record(None, "No id."),
    ]
    (delivery / "medical_report" / "incremental_a.json").write_text(json.dumps(reports))
    # a corrected version of exam 58's original report file: same path, new content -> replaces that report
    original = sample_dir / sample["report_58_file"]
    corrected = json.loads(original.read_text())
    records = corrected if isinstance(corrected, list) else [corrected]
    records[0]["content"]["text"] = "Corrected: no finding."
    (delivery / sample["report_58_file"]).write_text(json.dumps(corrected))
    # a report with no exam file of its name, and an exam file that is not JSON
    (delivery / "medical_report" / "lonely.json").write_text(json.dumps([report_record(NEW_EXAM_ID + 1, "Alone.")]))
    (delivery / "exam" / "broken.json").write_text('[{"content": {"id": 77')


def write_delivery_b(delivery: Path, sample_dir: Path, sample: dict) -> None:
    """Report-only corrections and a corrected sample exam file at the same path (same file slots)."""
    (delivery / "exam").mkdir(parents=True)
    (delivery / "medical_report").mkdir()
    # the incremental_a reports again, corrected: new versions of five existing reports, no exam with them
    reports = [
        report_record(58, "Pneumonia, confirmed."),
        report_record(sample["no_body_part_id"], "Clear."),
        report_record(12, "Old."),
    ]
    reports += [report_record(NEW_EXAM_ID, "Covid, confirmed."), report_record(None, "Still no id.")]
    (delivery / "medical_report" / "incremental_a.json").write_text(json.dumps(reports))
    # exam 12's original file, corrected: a later publication with one label, at the same file and position
    exam_12 = json.loads((sample_dir / sample["exam_12_file"]).read_text())
    records = exam_12 if isinstance(exam_12, list) else [exam_12]
    records[0]["publication_timestamp"] = LATER
    records[0]["content"]["labels"] = [label_record("edema", True)]
    (delivery / sample["exam_12_file"]).write_text(json.dumps(exam_12))


def write_pacs_run(lake_dir: Path, file_name: str) -> None:
    """A PACS run over one image, as `medlake pacs run` lands it (raw predictions, uploads, run)."""
    now = dt.datetime.now(dt.UTC)
    sop = "1.2.826.0.1.3680043.10.1.900001"
    tables = {
        "pacs_uploads": [
            {"run_id": "run-inc", "kind": "image", "file_name": file_name, "sop_instance_uid": sop,
             "orthanc_instance_id": "orthanc-900001", "status": "Success", "uploaded_at": now},
            {"run_id": "run-inc", "kind": "sr", "sop_instance_uid": "1.2.826.0.1.3680043.10.9.900001",
             "status": "Success", "referenced_sop_instance_uid": sop, "uploaded_at": now},
        ],
        "predictions": [
            {"run_id": "run-inc", "sop_instance_uid": sop, "file_name": file_name, "pathology": "Pneumonia",
             "score": 0.7, "threshold": 0.5, "is_positive": True, "model_name": "densenet121-res224-all",
             "model_version": "1.5.7", "weights_sha256": "f" * 64, "weights_trained": False, "predicted_at": now},
        ],
        "model_runs": [
            {"run_id": "run-inc", "model_name": "densenet121-res224-all", "model_version": "1.5.7",
             "weights_sha256": "f" * 64, "weights_trained": False, "device": "cpu", "started_at": now,
             "finished_at": now, "images_total": 1, "images_ok": 1, "images_failed": 0, "total_s": 1.0,
             "medlake_version": "0.1.0"},
        ],
    }  # fmt: skip
    for table, rows in tables.items():
        rows_table = pa.Table.from_pylist(rows, schema=RAW_TABLES[table])
        lake.write_part(lake_dir, table, rows_table, now.date(), "test-incremental-pacs")


# --- the sample lake, built, then two deliveries -------------------------------------------


@pytest.fixture(scope="module")
def sample_facts(built_sample_lake) -> dict:
    [(no_body_part_id, no_body_part_uri)] = sql(
        built_sample_lake, "select exam_id, image_uri from marts.fct_exams where is_missing_body_part"
    )
    return {
        "no_body_part_id": no_body_part_id,
        "no_body_part_uri": no_body_part_uri,
        "report_58_file": scalar(
            built_sample_lake, "select source_file from marts.fct_medical_reports where paired_exam_id = 58"
        ),
        "exam_12_file": scalar(built_sample_lake, "select source_file from marts.fct_exams where exam_id = 12"),
        "image_58": scalar(built_sample_lake, "select image_file_name from marts.fct_exams where exam_id = 58"),
        "labels_of_no_body_part": scalar(
            built_sample_lake, "select label_count from marts.fct_exams where is_missing_body_part"
        ),
    }


@pytest.fixture(scope="module")
def incremental_lake(built_sample_lake, tmp_path_factory):
    """A copy of the built sample lake: incremental builds happen here (its build record came with it)."""
    lake_dir = tmp_path_factory.mktemp("incremental") / "lake"
    shutil.copytree(built_sample_lake, lake_dir)
    yield lake_dir
    shutil.rmtree(dbt_runner.target_path_for(lake_dir), ignore_errors=True)


@pytest.fixture(scope="module")
def after_delivery_a(incremental_lake, neuralmed_dir, sample_facts, tmp_path_factory):
    delivery = tmp_path_factory.mktemp("delivery_a")
    write_delivery_a(delivery, neuralmed_dir, sample_facts)
    landed = landing.land(delivery, incremental_lake, delivery_date=None, workers=None, progress=False)
    summary = build(incremental_lake)
    counts = assert_equals_full_refresh(incremental_lake, tmp_path_factory.mktemp("full_a"))
    return {"summary": summary, "landed": landed, "counts": counts}


@pytest.fixture(scope="module")
def after_rebuild_without_news(after_delivery_a, incremental_lake, tmp_path_factory):
    snapshot = tmp_path_factory.mktemp("snapshot") / "before.duckdb"
    shutil.copyfile(lake.warehouse_path(incremental_lake), snapshot)
    summary = build(incremental_lake)
    return {"summary": summary, "differences": mart_differences(snapshot, lake.warehouse_path(incremental_lake))}


@pytest.fixture(scope="module")
def after_delivery_b(after_rebuild_without_news, incremental_lake, neuralmed_dir, sample_facts, tmp_path_factory):
    delivery = tmp_path_factory.mktemp("delivery_b")
    write_delivery_b(delivery, neuralmed_dir, sample_facts)
    landing.land(delivery, incremental_lake, delivery_date=None, workers=None, progress=False)
    new_image = scalar(incremental_lake, "select image_file_name from marts.fct_exams where exam_id = ?", [NEW_EXAM_ID])
    write_pacs_run(incremental_lake, new_image)
    summary = build(incremental_lake)
    counts = assert_equals_full_refresh(incremental_lake, tmp_path_factory.mktemp("full_b"))
    return {"summary": summary, "counts": counts, "new_image": new_image}


def test_delivery_a_builds_incrementally_to_the_full_refresh_marts(after_delivery_a):
    plan = after_delivery_a["summary"].plan
    assert plan.mode == "incremental" and not plan.full_refresh
    assert plan.tests_changed_since is not None  # tests looked at the new rows only
    assert set(dbt_runner.PACS_NODES) <= set(plan.excluded)  # no PACS run: the PACS marts stay as they are
    assert after_delivery_a["summary"].status_counts.get("error", 0) == 0
    # nothing silently lost: 122 sample exams + the new one + the new one without id
    assert after_delivery_a["counts"]["fct_exams"] == 124


def test_redelivered_exams_replace_labels_even_with_none(after_delivery_a, incremental_lake, sample_facts):
    rows = sql(
        incremental_lake,
        "select exam_id, delivery_count, label_count, body_part, image_file_name from marts.fct_exams "
        "where exam_id in (58, ?) order by exam_id",
        [sample_facts["no_body_part_id"]],
    )
    assert rows[1] == (58, 2, 2, "Chest", "58-v2.dcm")
    no_body_part_id = sample_facts["no_body_part_id"]
    assert rows[0] == (no_body_part_id, 2, 0, "Chest", rows[0][4])
    assert sample_facts["labels_of_no_body_part"] > 0
    exam_key = scalar(incremental_lake, "select exam_key from marts.fct_exams where exam_id = ?", [no_body_part_id])
    assert scalar(incremental_lake, "select count(*) from marts.bridge_exam_labels where exam_key = ?", [exam_key]) == 0
    # its missing-body-part finding went with the old delivery
    assert (
        scalar(incremental_lake, "select count(*) from marts.fct_data_quality where subject_key = ?", [exam_key]) == 0
    )


def test_old_image_of_a_moved_exam_leaves_dim_images(after_delivery_a, incremental_lake, sample_facts):
    image = sample_facts["image_58"]
    assert scalar(incremental_lake, "select count(*) from marts.dim_images where file_name = ?", [image]) == 0
    assert scalar(incremental_lake, "select exam_count from marts.dim_images where file_name = '58-v2.dcm'") == 1


def test_earlier_redelivery_loses_and_corrected_report_replaces(after_delivery_a, incremental_lake, sample_facts):
    assert sql(incremental_lake, "select delivery_count, label_count from marts.fct_exams where exam_id = 12") == [
        (2, 5)
    ]
    report = sql(
        incremental_lake,
        "select report_text, delivery_count from marts.fct_medical_reports where source_file = ?",
        [sample_facts["report_58_file"]],
    )
    assert report == [("Corrected: no finding.", 2)]
    findings = dict(sql(incremental_lake, "select finding_type, count(*) from marts.fct_data_quality group by 1"))
    assert findings["report_without_paired_exam"] == 1 and findings["quarantined_exam"] == 1


def test_rebuild_without_new_data_changes_nothing(after_rebuild_without_news):
    assert after_rebuild_without_news["summary"].plan.mode == "incremental"
    assert after_rebuild_without_news["differences"] == dict.fromkeys(MARTS, (0, 0))


def test_report_only_corrections_and_pacs_run_build_incrementally(after_delivery_b, incremental_lake):
    plan = after_delivery_b["summary"].plan
    assert plan.mode == "incremental" and not set(dbt_runner.PACS_NODES) & set(plan.excluded)
    texts = dict(
        sql(
            incremental_lake,
            "select e.exam_id, r.report_text from marts.fct_medical_reports r join marts.fct_exams e "
            "on r.exam_key = e.exam_key where r.source_file = 'medical_report/incremental_a.json' and e.exam_id = ?",
            [NEW_EXAM_ID],
        )
    )
    assert texts == {NEW_EXAM_ID: "Covid, confirmed."}
    # the corrected exam 12 file at the same path now wins: one label
    assert sql(incremental_lake, "select delivery_count, label_count from marts.fct_exams where exam_id = 12") == [
        (3, 1)
    ]
    image = sql(
        incremental_lake,
        "select is_in_pacs, has_sr, prediction_count from marts.dim_images where file_name = ?",
        [after_delivery_b["new_image"]],
    )
    assert image == [(True, True, 1)]


# --- a synthetic lake and a synthetic increment ---------------------------------------------


@pytest.mark.slow
def test_synthetic_increment_builds_to_the_full_refresh_marts(tmp_path):
    base, increment, lake_dir = tmp_path / "base", tmp_path / "increment", tmp_path / "lake"
    synth.generate(base, exams=1500, seed=21, dicom_exams=2, progress=False)
    # a later delivery: new exams after the base's ids, 10 % re-deliveries of base exams, new DICOMs
    synth.generate_increment(
        increment, exams=150, seed=23, base_exams=1500, base_seed=21, base_dicom_exams=2, dicom_exams=1
    )
    try:
        landing.land(base, lake_dir, delivery_date=dt.date(2021, 12, 1), workers=None, progress=False)
        assert build(lake_dir).plan.mode == "first build"
        before = mart_counts(lake_dir)
        landing.land(increment, lake_dir, delivery_date=dt.date(2021, 12, 2), workers=None, progress=False)
        summary = build(lake_dir)
        assert summary.plan.mode == "incremental"
        after = assert_equals_full_refresh(lake_dir, tmp_path)
        assert after["bridge_exam_labels"] != before["bridge_exam_labels"]
        assert scalar(lake_dir, "select max(delivery_count) from marts.fct_exams") >= 2
    finally:
        shutil.rmtree(dbt_runner.target_path_for(lake_dir), ignore_errors=True)


# --- how a build is planned ----------------------------------------------------------------


def test_a_changed_project_forces_a_full_refresh(built_sample_lake, tmp_path):
    lake_dir = tmp_path / "lake"
    shutil.copytree(built_sample_lake, lake_dir)
    recorded = build_state.read(lake.warehouse_path(lake_dir))
    assert recorded is not None and recorded.project_fingerprint == build_state.project_fingerprint(
        dbt_runner.PROJECT_DIR
    )
    moved = dbt_runner.plan_build(lake_dir, full_refresh=False)  # a copy: its views read the original's raw
    assert moved.mode == "incremental" and "config.materialized:view" not in moved.excluded
    in_place = dbt_runner.plan_build(built_sample_lake, full_refresh=False)
    assert in_place.mode == "incremental" and "config.materialized:view" in in_place.excluded
    stale = build_state.BuildState(
        "an older project", recorded.lake_path, recorded.landed_until, recorded.pacs_signature, recorded.built_at, False
    )
    build_state.write(lake.warehouse_path(lake_dir), stale)
    plan = dbt_runner.plan_build(lake_dir, full_refresh=False)
    assert plan.mode == "full refresh" and plan.full_refresh and "changed" in plan.reason
    assert plan.excluded == () and plan.tests_changed_since is None


def test_build_records_what_it_folded_in(built_sample_lake):
    recorded = build_state.read(lake.warehouse_path(built_sample_lake))
    assert recorded.landed_until == build_state.landed_until(built_sample_lake)
    assert recorded.landed_until == scalar(built_sample_lake, "select max(last_ingested_at) from marts.fct_exams")


def test_build_refuses_to_run_while_a_delivery_lands(tmp_path):
    lake_dir = tmp_path / "lake"
    lake.init_lake(lake_dir)
    with open(lake_dir / "raw" / lake.LOCK_FILE, "a+b") as held:  # the very lock `medlake land` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LakeError, match="land or build is using"):
            build(lake_dir)
    assert not lake.warehouse_path(lake_dir).exists()
