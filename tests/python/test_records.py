"""Record parsing without a disk: parsed JSON records in, raw-table columns and quarantine rows out."""

from __future__ import annotations

import json

from medlake.lake.json_records import guard_depth, parse_delivery_file
from medlake.lake.records import Quarantine, RecordColumns
from medlake.vocab import QuarantineReason


def parse(exams_per_file: list[list], reports_per_file: list[list] = ()) -> tuple[RecordColumns, Quarantine]:
    quarantine = Quarantine()
    records = RecordColumns(quarantine)
    for index, file_records in enumerate(exams_per_file):
        records.add_exams(index, file_records)
    for index, file_records in enumerate(reports_per_file, start=len(exams_per_file)):
        records.add_reports(index, file_records)
    records.finish()
    return records, quarantine


def test_exams_labels_and_reports_become_columns_with_their_file_and_position():
    label = {"classification": "covid19", "value": True, "reviewer": "x"}
    exams = [
        [
            {"content": {"id": 1, "source": ["a"], "labels": [label, "oops"]}, "publication_timestamp": 1.5},
            {"content": {"id": "2"}, "site": "north"},
        ],
        [{"content": {"id": 3, "labels": None}}],
    ]
    reports = [[{"content": {"exam_id": 1, "text": "ok", "priority": 2}}]]
    records, quarantine = parse(exams, reports)

    assert records.exams.file_of == [0, 0, 1]
    assert records.exams["record_position"] == [0, 1, 0]
    assert records.exams["id"].to_pylist() == ["1", "2", "3"]
    assert records.exams["source"].to_pylist() == ['["a"]', None, None]
    assert records.exams["labels_state"] == ["list", "absent", "null"]
    assert records.exams["label_entry_count"] == [2, 0, 0]
    assert records.exams["publication_timestamp"].to_pylist() == ["1.5", None, None]
    assert [json.loads(x) if x else None for x in records.exams["extra_fields_json"]] == [None, {"site": "north"}, None]
    assert records.labels["value"].to_pylist() == ["true"]
    assert json.loads(records.labels["extra_fields_json"][0]) == {"reviewer": "x"}
    assert records.reports["exam_id"].to_pylist() == ["1"]
    assert records.reports.file_of == [2]
    assert json.loads(records.reports["extra_fields_json"][0]) == {"content": {"priority": 2}}

    assert quarantine.file_of == [0]
    assert quarantine["entity"] == ["exam_label"]
    assert (quarantine["record_position"], quarantine["label_position"]) == ([0], [1])
    assert quarantine["reason_code"] == [QuarantineReason.LABEL_NOT_OBJECT]
    assert quarantine.by_entity == {}  # label rows are not record-level rows


def test_records_that_are_not_exams_are_quarantined_with_their_reason():
    records, quarantine = parse([[1, {"content": 5}, {"content": None}, {"content": {"labels": "covid"}}]])
    assert len(records.exams) == 0
    assert quarantine["reason_code"] == [
        "record_not_object",
        "content_not_object",
        "missing_content",
        "labels_not_list",
    ]
    assert quarantine["record_position"] == [0, 1, 2, 3]
    assert quarantine.by_entity == {"exam": 4}


def test_a_record_nested_a_thousand_levels_deep_is_quarantined_and_its_neighbours_land():
    deep = "[" * 1000 + "]" * 1000
    data = f'[{{"content": {{"id": 1}}}}, {{"content": {{"id": 2, "x": {deep}}}}}, {{"content": {{"id": 3}}}}]'
    raw = data.encode()
    records_in = guard_depth(raw, parse_delivery_file(raw).records)
    records, quarantine = parse([records_in])
    assert records.exams["id"].to_pylist() == ["1", "3"]
    assert quarantine["reason_code"] == [QuarantineReason.TOO_DEEPLY_NESTED]
    assert quarantine["record_position"] == [1]
    assert len(quarantine["raw_excerpt"][0]) <= 500
