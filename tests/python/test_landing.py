"""``medlake land`` on the real sample and on crafted deliveries with every quirk.

Each test lands into its own lake under tmp_path and reads the Parquet back: no mocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from medlake.cli import main
from medlake.errors import LakeError, LandingError
from medlake.lake import landing
from medlake.lake.layout import read_raw

EMPTY_REPORT = "medical_report/medical-report-20211201100000.json"


def rows(lake: Path, table: str) -> list[dict]:
    return read_raw(lake, table).to_pylist()


def part_files(lake: Path) -> set[Path]:
    return {p for p in (lake / "raw").rglob("*.parquet") if p.name != "schema.parquet"}


# --- the real sample ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_lake(neuralmed_dir, tmp_path_factory):
    lake = tmp_path_factory.mktemp("sample") / "lake"
    summary = landing.land(neuralmed_dir, lake, delivery_date=None, workers=None, progress=False)
    return lake, summary


def test_real_sample_lands_every_exam_label_and_report(sample_lake):
    lake, summary = sample_lake
    assert len(rows(lake, "exams")) == 122
    assert len(rows(lake, "exam_labels")) == 545
    assert len(rows(lake, "medical_reports")) == 122
    assert rows(lake, "quarantine") == []
    assert summary.files_seen == {"exam": 100, "medical_report": 101}
    assert summary.files_landed == {"exam": 100, "medical_report": 101}
    assert summary.rows_landed["exams"] == 122
    assert summary.quarantined == {}
    assert summary.ignored_entries == ("SOURCE.md",)
    assert "SOURCE.md" in summary.render()
    assert summary.to_dict()["rows_landed"]["exam_labels"] == 545


def test_real_sample_manifest_has_every_file_and_the_empty_report_with_zero_records(sample_lake):
    lake, _ = sample_lake
    manifest = {row["source_file"]: row for row in rows(lake, "landed_files")}
    assert len(manifest) == 201
    empty = manifest[EMPTY_REPORT]
    assert (empty["size_bytes"], empty["records_landed"], empty["records_quarantined"]) == (0, 0, 0)
    assert empty["source_file_sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sum(row["records_landed"] for row in manifest.values()) == 244


def test_real_sample_raw_values_keep_their_json_meaning(sample_lake):
    lake, _ = sample_lake
    exams = rows(lake, "exams")
    assert [exam["record_position"] for exam in exams if exam["id"] is None] == [0]  # the exam without id lands
    assert {exam["source"] for exam in exams} == {'["hospital ABC"]', '["first institute"]'}
    assert "12" in {exam["id"] for exam in exams}
    assert all(re.fullmatch(r"\d{10}\.\d+", exam["publication_timestamp"]) for exam in exams)
    assert {exam["labels_state"] for exam in exams} == {"list"}
    assert sum(exam["label_entry_count"] for exam in exams) == 545
    assert {label["value"] for label in rows(lake, "exam_labels")} == {"true", "false"}
    by_file = {exam["source_file"] for exam in exams}
    assert all(name.startswith("exam/") and name.endswith(".json") for name in by_file)


def test_real_sample_rerun_adds_nothing(sample_lake, neuralmed_dir):
    lake, _ = sample_lake
    before = part_files(lake)
    summary = landing.land(neuralmed_dir, lake, delivery_date=None, workers=None, progress=False)
    assert summary.files_landed == {}
    assert summary.files_skipped == {"exam": 100, "medical_report": 101}
    assert summary.rows_landed == {}
    assert part_files(lake) == before
    assert len(rows(lake, "exams")) == 122
    assert len(rows(lake, "landed_files")) == 201


def test_parallel_chunks_land_the_same_rows_as_one_process(neuralmed_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(landing, "JSON_CHUNK_FILES", 25)
    monkeypatch.setattr(landing, "MIN_FILES_FOR_WORKERS", 0)
    lake = tmp_path / "lake"
    summary = landing.land(neuralmed_dir, lake, delivery_date=None, workers=2, progress=False)
    assert summary.workers == 2
    assert summary.batches == 4 + 5  # 100 exam files and 101 report files in chunks of 25
    assert len(rows(lake, "exams")) == 122
    assert len(rows(lake, "exam_labels")) == 545
    assert len(rows(lake, "medical_reports")) == 122
    assert len({row["landing_run_id"] for row in rows(lake, "landed_files")}) == 9


# --- crafted deliveries -----------------------------------------------------------

LABEL = {
    "classification": "covid19",
    "labelled_by": "Ana",
    "labelled_date": "2021-12-01",
    "labelling_method": "physician",
    "classification_type": "binary",
    "value": True,
}


def exam(exam_id, **extra):
    return {
        "content": {"id": exam_id, "source": "hospital ABC", "labels": [LABEL], **extra},
        "publication_timestamp": 1,
    }


# file -> (bytes, records in the file; a file rejected whole counts as one record)
EXAM_FILES: dict[str, tuple[bytes, int]] = {
    "a_array.json": (
        json.dumps(
            [
                {
                    "content": {
                        "id": "12",
                        "source": ["first institute"],
                        "priority": 2,
                        "labels": [dict(LABEL, value="false", reviewer="x")],
                    },
                    "publication_timestamp": 1638316800.5,
                    "site": "north",
                },
                {"publication_timestamp": 1638316800},
                {"content": {"id": 5, "labels": "covid19"}},
            ]
        ).encode(),
        3,
    ),
    "b_lines.json": (
        b'{"content": {"id": 20, "labels": []}}\n{"content": {"id": 21, \n\n{"content": {"id": 22}}\n',
        3,
    ),
    "c_object.json": (json.dumps({"content": {"id": 30, "labels": ["oops", LABEL, 7]}}).encode(), 1),
    "d_blank.json": (b"  \n\t \n", 0),
    "e_invalid.json": (b'[{"content": {"id": 1}', 1),
    "f_latin1.json": ('[{"content": {"id": 40, "body_part": "tórax"}}]'.encode("latin-1"), 1),
    "g_not_objects.json": (b'[1, "x", {"content": 5}, {"content": null}]', 4),
    "h_labels.json": (json.dumps([{"content": {"id": 50, "labels": None}}, {"content": {"id": 51}}]).encode(), 2),
}
REPORT_FILES: dict[str, tuple[bytes, int]] = {
    "a_array.json": (
        json.dumps(
            [
                {"content": {"exam_id": 13, "report_date": "2021-12-02", "reported_by": "Dr", "text": "ok"}},
                {"content": {"exam_id": "6", "text": "t"}, "publication_timestamp": 1638316900.25},
            ]
        ).encode(),
        2,
    ),
    "empty.json": (b"", 0),
}


def write_delivery(root: Path, exam_files=EXAM_FILES, report_files=REPORT_FILES) -> Path:
    for directory, files in (("exam", exam_files), ("medical_report", report_files)):
        (root / directory).mkdir(parents=True, exist_ok=True)
        for name, (data, _) in files.items():
            (root / directory / name).write_bytes(data)
    (root / "README.txt").write_text("not part of the delivery")
    (root / "scratch").mkdir(exist_ok=True)
    (root / "scratch" / "notes.json").write_text("[]")
    return root


@pytest.fixture
def crafted(tmp_path):
    delivery = write_delivery(tmp_path / "delivery")
    lake = tmp_path / "lake"
    summary = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    return delivery, lake, summary


def by_position(table_rows, source_file):
    return {row["record_position"]: row for row in table_rows if row["source_file"] == source_file}


def test_every_record_lands_or_is_quarantined(crafted):
    _, lake, summary = crafted
    manifest = {row["source_file"]: row for row in rows(lake, "landed_files")}
    expected = {f"exam/{n}": c for n, (_, c) in EXAM_FILES.items()} | {
        f"medical_report/{n}": c for n, (_, c) in REPORT_FILES.items()
    }
    assert set(manifest) == set(expected)
    for source_file, records_in in expected.items():
        row = manifest[source_file]
        assert row["records_landed"] + row["records_quarantined"] == records_in, source_file
    quarantine = rows(lake, "quarantine")
    record_level = [q for q in quarantine if q["entity"] != "exam_label"]
    landed = len(rows(lake, "exams")) + len(rows(lake, "medical_reports"))
    assert landed + len(record_level) == sum(expected.values())
    assert summary.records_quarantined == {"exam": len(record_level)}
    assert summary.quarantined == dict(Counter(q["reason_code"] for q in quarantine))
    assert summary.ignored_entries == ("README.txt", "scratch/")


def test_quarantine_rows_say_file_position_and_reason(crafted):
    _, lake, _ = crafted
    quarantine = rows(lake, "quarantine")
    found = {(q["source_file"], q["record_position"], q["label_position"]): q for q in quarantine}
    invalid = found[("exam/e_invalid.json", None, None)]
    assert (invalid["entity"], invalid["reason_code"]) == ("exam", "invalid_json")
    assert invalid["raw_excerpt"] == '[{"content": {"id": 1}'
    assert found[("exam/f_latin1.json", None, None)]["reason_code"] == "not_utf8"
    missing = found[("exam/a_array.json", 1, None)]
    assert missing["reason_code"] == "missing_content"
    assert "'content' is missing" in missing["reason"]
    assert json.loads(missing["raw_excerpt"]) == {"publication_timestamp": 1638316800}
    assert found[("exam/a_array.json", 2, None)]["reason_code"] == "labels_not_list"
    assert found[("exam/b_lines.json", 1, None)]["reason_code"] == "invalid_json"
    assert [found[("exam/g_not_objects.json", i, None)]["reason_code"] for i in range(4)] == [
        "record_not_object",
        "record_not_object",
        "content_not_object",
        "missing_content",
    ]
    label_rows = [q for q in quarantine if q["entity"] == "exam_label"]
    assert {(q["record_position"], q["label_position"], q["raw_excerpt"]) for q in label_rows} == {
        (0, 0, '"oops"'),
        (0, 2, "7"),
    }
    assert all(q["reason_code"] == "label_not_object" for q in label_rows)
    assert all(q["source_file_sha256"] and q["landing_run_id"] for q in quarantine)


def test_drifting_types_are_stored_as_raw_text_and_unknown_fields_are_kept(crafted):
    _, lake, _ = crafted
    exams = rows(lake, "exams")
    first = by_position(exams, "exam/a_array.json")[0]
    assert first["id"] == "12"
    assert first["source"] == '["first institute"]'
    assert first["publication_timestamp"] == "1638316800.5"
    assert json.loads(first["extra_fields_json"]) == {"site": "north", "content": {"priority": 2}}
    label = next(row for row in rows(lake, "exam_labels") if row["source_file"] == "exam/a_array.json")
    assert label["value"] == "false"
    assert json.loads(label["extra_fields_json"]) == {"reviewer": "x"}
    lines = by_position(exams, "exam/b_lines.json")
    assert sorted(lines) == [0, 2]
    assert lines[2]["id"] == "22"
    assert lines[2]["labels_state"] == "absent"
    assert lines[2]["source"] is None  # absent -> NULL
    labels_state = {row["id"]: (row["labels_state"], row["label_entry_count"]) for row in exams}
    assert labels_state["50"] == ("null", 0)
    assert labels_state["51"] == ("absent", 0)
    assert labels_state["20"] == ("list", 0)
    assert labels_state["30"] == ("list", 3)  # entries as delivered; 2 of them are quarantined
    reports = by_position(rows(lake, "medical_reports"), "medical_report/a_array.json")
    assert reports[0]["exam_id"] == "13" and reports[0]["extra_fields_json"] is None
    assert reports[1]["exam_id"] == "6" and reports[1]["report_date"] is None
    assert json.loads(reports[1]["extra_fields_json"]) == {"publication_timestamp": 1638316900.25}


def test_lineage_columns_are_filled(crafted):
    _, lake, summary = crafted
    for table in ("exams", "exam_labels", "medical_reports", "quarantine", "landed_files"):
        for row in rows(lake, table):
            assert re.fullmatch(r"[0-9a-f]{32}", row["landing_run_id"])
            assert row["delivery_date"].isoformat() == summary.delivery_date
            assert row["ingested_at"].tzinfo is not None
            assert not Path(row["source_file"]).is_absolute()


def test_parts_are_written_atomically_and_named_by_batch(crafted):
    _, lake, _ = crafted
    assert not [p for p in lake.rglob("*") if p.name.startswith(".tmp-")]
    parts = part_files(lake)
    assert parts
    for part in parts:
        assert re.fullmatch(r"part-[0-9a-f]{32}\.parquet", part.name)
        assert re.fullmatch(r"delivery_date=\d{4}-\d{2}-\d{2}", part.parent.name)
    batch_ids = {row["landing_run_id"] for row in rows(lake, "landed_files")}
    assert {part.stem.removeprefix("part-") for part in parts} == batch_ids


def test_rerun_adds_nothing_and_a_redelivered_file_lands_again(crafted):
    delivery, lake, _ = crafted
    before = {table: len(rows(lake, table)) for table in ("exams", "exam_labels", "quarantine", "landed_files")}
    again = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    assert again.files_landed == {}
    assert {table: len(rows(lake, table)) for table in before} == before

    (delivery / "exam" / "h_labels.json").write_text(json.dumps([exam(50), exam(51), exam(52)]))
    third = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    assert third.files_landed == {"exam": 1}
    assert third.rows_landed == {"exams": 3, "exam_labels": 3}
    versions = [row for row in rows(lake, "landed_files") if row["source_file"] == "exam/h_labels.json"]
    assert len({row["source_file_sha256"] for row in versions}) == 2
    assert len(rows(lake, "exams")) == before["exams"] + 3


def test_an_interrupted_batch_is_cleaned_up_and_landed_once(crafted):
    delivery, lake, _ = crafted
    exams_before = sorted((r["source_file"], r["record_position"]) for r in rows(lake, "exams"))
    exam_batch = rows(lake, "exams")[0]["landing_run_id"]
    # A crash between the data parts and the manifest part: the manifest part is missing.
    manifest_part = next(p for p in part_files(lake) if "landed_files" in p.parts and exam_batch in p.name)
    manifest_part.unlink()
    summary = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    assert summary.orphan_parts_removed == 3  # exams, exam_labels, quarantine of that batch
    assert summary.files_landed == {"exam": len(EXAM_FILES)}
    assert sorted((r["source_file"], r["record_position"]) for r in rows(lake, "exams")) == exams_before
    assert rows(lake, "exams")[0]["landing_run_id"] == exam_batch  # same inputs, same batch id


def test_land_command_prints_a_summary_and_exits_zero_when_only_quarantining(tmp_path, capsys):
    delivery = write_delivery(tmp_path / "delivery")
    code = main(["land", "--input", str(delivery), "--lake", str(tmp_path / "lake"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "quarantined rows" in out and "invalid_json" in out
    code = main(
        ["land", "--input", str(delivery), "--lake", str(tmp_path / "lake"), "--no-progress", "--format", "json"]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["files_skipped_already_landed"] == {"exam": len(EXAM_FILES), "medical_report": len(REPORT_FILES)}


def test_unreadable_and_special_files_are_reported_not_dropped(tmp_path):
    delivery = write_delivery(tmp_path / "delivery")
    (delivery / "exam" / "z_gone.json").symlink_to(tmp_path / "deleted-before-landing.json")
    os.mkfifo(delivery / "exam" / "z_pipe")
    summary = landing.land(delivery, tmp_path / "lake", delivery_date=None, workers=1, progress=False)
    gone = [q for q in rows(tmp_path / "lake", "quarantine") if q["source_file"] == "exam/z_gone.json"]
    assert [(q["reason_code"], q["record_position"]) for q in gone] == [("unreadable_file", None)]
    assert "No such file" in gone[0]["reason"]
    manifest = {row["source_file"] for row in rows(tmp_path / "lake", "landed_files")}
    assert "exam/z_gone.json" not in manifest  # no bytes, no sha256: retried by the next run
    assert "exam/z_pipe (not a regular file)" in summary.ignored_entries
    assert summary.files_seen["exam"] == len(EXAM_FILES) + 1


# --- fatal errors -----------------------------------------------------------------


def test_missing_input_dir_is_a_landing_error_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-delivery"
    with pytest.raises(LandingError, match=re.escape(str(missing))):
        landing.land(missing, tmp_path / "lake", delivery_date=None, workers=1, progress=False)


def test_input_without_any_known_subdir_is_a_landing_error(tmp_path):
    (tmp_path / "delivery" / "exams").mkdir(parents=True)  # a near miss: 'exams', not 'exam'
    with pytest.raises(LandingError, match="none of exam/, medical_report/, images/"):
        landing.land(tmp_path / "delivery", tmp_path / "lake", delivery_date=None, workers=1, progress=False)


def test_unwritable_lake_is_a_lake_error(tmp_path):
    delivery = write_delivery(tmp_path / "delivery")
    not_a_dir = tmp_path / "lake-file"
    not_a_dir.write_text("a file where the lake should be")
    with pytest.raises(LakeError, match="cannot write to lake"):
        landing.land(delivery, not_a_dir, delivery_date=None, workers=1, progress=False)


def test_cli_exits_non_zero_with_the_path_on_stderr(tmp_path, capsys):
    missing = tmp_path / "nope"
    code = main(["land", "--input", str(missing), "--lake", str(tmp_path / "lake"), "--no-progress"])
    assert code == 1
    assert str(missing) in capsys.readouterr().err


# --- hostile deliveries (issue 9 items 1 and 5) -----------------------------------

HOST_SECRET = "root:$6$not-a-real-hash-but-a-host-secret:19000:0:99999:7:::"


def quarantine_and_staging_text(lake: Path) -> str:
    """Everything the raw quarantine and manifest hold, as text (what the staging views read)."""
    return json.dumps([rows(lake, "quarantine"), rows(lake, "landed_files")], default=str)


def test_a_symlink_out_of_the_delivery_is_quarantined_and_nothing_of_it_is_read(tmp_path):
    secret = tmp_path / "host" / "shadow"  # stands in for /etc/shadow
    secret.parent.mkdir()
    secret.write_text(json.dumps([{"content": {"id": 666, "source": HOST_SECRET}}]))
    delivery = write_delivery(tmp_path / "delivery")
    (delivery / "exam" / "z_shadow.json").symlink_to(secret)
    (delivery / "medical_report" / "z_shadow.json").symlink_to(secret)
    (delivery / "images").mkdir()
    (delivery / "images" / "shadow.dcm").symlink_to(secret)
    (delivery / "exam" / "z_inside.json").symlink_to(delivery / "exam" / "h_labels.json")  # inside: lands
    lake = tmp_path / "lake"
    summary = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    refused = {q["source_file"]: q for q in rows(lake, "quarantine") if q["reason_code"] == "outside_delivery_root"}
    assert set(refused) == {"exam/z_shadow.json", "medical_report/z_shadow.json", "images/shadow.dcm"}
    assert all(q["raw_excerpt"] is None and q["source_file_sha256"] == "" for q in refused.values())
    assert summary.quarantined["outside_delivery_root"] == 3
    assert "666" not in {exam["id"] for exam in rows(lake, "exams")}
    assert "exam/z_inside.json" in {exam["source_file"] for exam in rows(lake, "exams")}
    every_byte = b"".join(p.read_bytes() for p in lake.rglob("*.parquet"))
    assert b"host-secret" not in every_byte
    assert "host-secret" not in quarantine_and_staging_text(lake)
    secret_sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert secret_sha.encode() not in every_byte


def test_a_record_nested_a_thousand_levels_deep_is_quarantined_while_the_rest_lands(tmp_path):
    deep = "[" * 1000 + "]" * 1000
    delivery = write_delivery(tmp_path / "delivery")
    (delivery / "exam" / "z_deep.json").write_text(
        f'[{{"content": {{"id": 900}}}}, {{"content": {{"id": 901, "source": {deep}}}}}]'
    )
    (delivery / "exam" / "z_deeper.json").write_text(f'[{{"content": {{"id": 902, "x": {"[" * 5000 + "]" * 5000}}}}}]')
    lake = tmp_path / "lake"
    summary = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    found = {(q["source_file"], q["record_position"]): q["reason_code"] for q in rows(lake, "quarantine")}
    assert found[("exam/z_deep.json", 1)] == "too_deeply_nested"
    assert found[("exam/z_deeper.json", None)] == "invalid_json"  # past orjson's 1024 levels: the file is not JSON
    assert "900" in {exam["id"] for exam in rows(lake, "exams")}
    assert summary.files_landed["exam"] == len(EXAM_FILES) + 2


def test_a_file_name_that_is_not_utf8_is_quarantined_while_the_rest_lands(tmp_path):
    delivery = write_delivery(tmp_path / "delivery")
    bad_name = os.path.join(os.fsencode(delivery / "exam"), b"caf\xe9.json")
    with open(bad_name, "wb") as handle:
        handle.write(json.dumps([exam(77)]).encode())
    lake = tmp_path / "lake"
    summary = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    bad = [q for q in rows(lake, "quarantine") if q["reason_code"] == "file_name_not_utf8"]
    assert [q["source_file"] for q in bad] == ["exam/caf\\xe9.json"]
    assert summary.files_landed["exam"] == len(EXAM_FILES)
    assert "77" not in {exam["id"] for exam in rows(lake, "exams")}
    code = main(["land", "--input", str(delivery), "--lake", str(lake), "--no-progress", "--format", "json"])
    assert code == 0


def test_a_dangling_symlink_quarantine_row_survives_the_next_land_of_another_delivery(tmp_path):
    first = tmp_path / "first"
    (first / "images").mkdir(parents=True)
    (first / "images" / "gone.dcm").symlink_to(tmp_path / "removed-before-landing.dcm")
    lake = tmp_path / "lake"
    landing.land(first, lake, delivery_date=None, workers=1, progress=False)
    gone = [q for q in rows(lake, "quarantine") if q["source_file"] == "images/gone.dcm"]
    assert [q["reason_code"] for q in gone] == ["unreadable_file"]
    other = write_delivery(tmp_path / "other")
    summary = landing.land(other, lake, delivery_date=None, workers=1, progress=False)
    assert summary.orphan_parts_removed == 0
    assert [q["reason_code"] for q in rows(lake, "quarantine") if q["source_file"] == "images/gone.dcm"] == [
        "unreadable_file"
    ]


def test_a_delivery_directory_that_is_a_symlink_out_of_the_delivery_is_not_read(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.json").write_text(json.dumps([{"content": {"exam_id": 1, "text": HOST_SECRET}}]))
    delivery = write_delivery(tmp_path / "delivery", report_files={})
    (delivery / "medical_report").rmdir()
    (delivery / "medical_report").symlink_to(host, target_is_directory=True)
    lake = tmp_path / "lake"
    summary = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    assert summary.quarantined["outside_delivery_root"] == 1
    assert rows(lake, "medical_reports") == []
    assert b"host-secret" not in b"".join(p.read_bytes() for p in lake.rglob("*.parquet"))
