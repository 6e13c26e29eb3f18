"""Reading one delivery file: every layout a delivery uses, and the raw-value text rule."""

from __future__ import annotations

import pytest

from medlake.lake.json_records import (
    INVALID_JSON,
    NOT_UTF8,
    LineError,
    excerpt_of_bytes,
    parse_delivery_file,
    raw_value,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hospital ABC", "hospital ABC"),
        ("12", "12"),
        ("", ""),
        (12, "12"),
        (1626971804.163436, "1626971804.163436"),
        (["first institute"], '["first institute"]'),
        (True, "true"),
        (False, "false"),
        (None, None),
        ({"a": [1, "é"]}, '{"a":[1,"é"]}'),
    ],
)
def test_raw_value_keeps_strings_and_writes_other_json_as_compact_text(value, expected):
    assert raw_value(value) == expected


def test_array_file_gives_each_record_at_its_position():
    parsed = parse_delivery_file(b'[{"content": {"id": 1}}, {"content": {"id": 2}}]')
    assert parsed.layout == "array"
    assert not parsed.rejected
    assert [record["content"]["id"] for record in parsed.records] == [1, 2]


def test_single_object_file_is_one_record():
    parsed = parse_delivery_file(b'{"content": {"id": 7}}\n')
    assert parsed.layout == "object"
    assert parsed.records == [{"content": {"id": 7}}]


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n", b"\xef\xbb\xbf  "])
def test_empty_and_whitespace_files_have_no_records_and_no_error(data):
    parsed = parse_delivery_file(data)
    assert parsed.layout == "empty"
    assert parsed.records == []
    assert not parsed.rejected


def test_utf8_bom_is_accepted():
    parsed = parse_delivery_file(b'\xef\xbb\xbf[{"content": {"id": 1}}]')
    assert parsed.records == [{"content": {"id": 1}}]


def test_json_lines_bad_line_is_an_error_at_its_position_and_other_lines_parse():
    data = b'{"content": {"id": 1}}\n\n{"content": {"id": \n{"content": {"id": 3}}\n'
    parsed = parse_delivery_file(data)
    assert parsed.layout == "json_lines"
    assert not parsed.rejected
    assert len(parsed.records) == 3  # blank lines are not records
    assert parsed.records[0] == {"content": {"id": 1}}
    bad = parsed.records[1]
    assert isinstance(bad, LineError)
    assert bad.code == INVALID_JSON
    assert "JSON line 1" in bad.reason
    assert bad.excerpt == '{"content": {"id": '
    assert parsed.records[2] == {"content": {"id": 3}}


def test_invalid_json_rejects_the_whole_file_with_reason_and_excerpt():
    parsed = parse_delivery_file(b'[{"content": {"id": 1}, ')
    assert parsed.rejected
    assert parsed.layout == "rejected"
    assert parsed.error_code == INVALID_JSON
    assert parsed.error.startswith("invalid JSON:")
    assert parsed.excerpt == '[{"content": {"id": 1}, '


def test_broken_pretty_printed_document_is_not_mistaken_for_json_lines():
    data = b'[\n  {\n    "content": {"id": 1},\n  }\n'
    parsed = parse_delivery_file(data)
    assert parsed.error_code == INVALID_JSON
    assert parsed.records == []


def test_not_utf8_bytes_are_rejected_as_not_utf8():
    parsed = parse_delivery_file('[{"content": {"text": "laudo médico"}}]'.encode("latin-1"))
    assert parsed.error_code == NOT_UTF8
    assert "not valid UTF-8" in parsed.error


def test_a_bare_scalar_is_one_record_that_is_not_an_object():
    parsed = parse_delivery_file(b"42")
    assert parsed.layout == "scalar"
    assert parsed.records == [42]


def test_excerpt_is_bounded_and_survives_bad_bytes():
    excerpt = excerpt_of_bytes(b"\xff" * 10_000)
    assert len(excerpt) == 500
    assert set(excerpt) == {"\ufffd"}
