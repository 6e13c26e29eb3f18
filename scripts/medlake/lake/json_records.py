"""Reading one delivery file into records, and turning JSON values into raw-layer text.

A delivery file holds a JSON array of records, a single JSON object, JSON lines (one value
per line), or nothing at all (0 bytes or only whitespace). :func:`parse_delivery_file`
turns its bytes into a :class:`ParsedFile`: either a file-level problem (the whole file is
quarantined, ``record_position`` NULL) or the list of records, one per position, each the
parsed value or, for a bad JSON line, a :class:`LineError` saying why. Deciding
what a record *means* (exam, report) is the caller's job.

Raw values follow ``raw_schema``'s rule: a JSON string stays that string, any other JSON
value becomes its compact JSON text (``12``, ``["first institute"]``, ``true``), and an
absent or null field is NULL. orjson reads integers beyond 64 bits as floats; such ids are
implausible in deliveries and would land as their float text.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from typing import Any

import orjson

from medlake.vocab import FileLayout, QuarantineReason

UTF8_BOM = b"\xef\xbb\xbf"
EXCERPT_CHARS = 500

# Reason codes (medlake.vocab.QuarantineReason), by their short names.
INVALID_JSON = QuarantineReason.INVALID_JSON
NOT_UTF8 = QuarantineReason.NOT_UTF8
UNREADABLE_FILE = QuarantineReason.UNREADABLE_FILE
RECORD_NOT_OBJECT = QuarantineReason.RECORD_NOT_OBJECT
MISSING_CONTENT = QuarantineReason.MISSING_CONTENT
CONTENT_NOT_OBJECT = QuarantineReason.CONTENT_NOT_OBJECT
LABELS_NOT_LIST = QuarantineReason.LABELS_NOT_LIST
LABEL_NOT_OBJECT = QuarantineReason.LABEL_NOT_OBJECT
TOO_DEEPLY_NESTED = QuarantineReason.TOO_DEEPLY_NESTED

# orjson parses up to 1024 levels but writes at most 254; a record deeper than that could not
# be kept as raw JSON text, so it is quarantined (TOO_DEEPLY_NESTED). A file needs at least this
# many brackets to hold one, which is what makes the check free for ordinary files.
MAX_WRITABLE_DEPTH = 254
_excerpt_repr = reprlib.Repr()  # a depth-capped rendering for excerpts of such records
_excerpt_repr.maxlevel, _excerpt_repr.maxstring, _excerpt_repr.maxother = 12, 120, 120

_dumps = orjson.dumps
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def raw_value(value: Any) -> str | None:
    """A JSON value as raw-layer text: strings as-is, null as None, anything else compact JSON."""
    if value.__class__ is str:
        return value
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    return compact_json(value)


def compact_json(value: Any) -> str:
    """Compact JSON text of a parsed value (UTF-8 kept as-is, no spaces)."""
    try:
        return _dumps(value).decode()
    except TypeError:
        # orjson refuses some values the stdlib can represent (e.g. huge ints from the fallback parser).
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def excerpt_of_value(value: Any) -> str:
    """The first ~500 characters of a parsed value's JSON text, for quarantine rows."""
    return compact_json(value)[:EXCERPT_CHARS]


def excerpt_of_bytes(data: bytes) -> str:
    """The first ~500 characters of raw bytes (undecodable bytes shown as U+FFFD)."""
    return data[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]


@dataclass(frozen=True, slots=True)
class LineError:
    """A JSON line that could not be parsed; it stands in that line's record position."""

    code: str
    reason: str
    excerpt: str


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What a delivery file holds: records (possibly none), or a file-level problem.

    ``records[i]`` is the parsed JSON value at record position ``i`` (usually a dict), or a
    :class:`LineError` for a JSON line that did not parse. Values are kept as plain parsed
    objects (no wrapper per record) because landing walks millions of them.
    """

    layout: FileLayout
    records: list[Any]
    error_code: str | None = None
    error: str | None = None
    excerpt: str | None = None

    @property
    def rejected(self) -> bool:
        return self.error_code is not None


def _first_error_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def _decode_error(data: bytes, exc: Exception) -> tuple[str, str]:
    """Classify a failed parse: bytes that are not UTF-8, or UTF-8 that is not JSON."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return NOT_UTF8, f"file is not valid UTF-8 (byte 0x{data[bad.start]:02x} at offset {bad.start})"
    return INVALID_JSON, f"invalid JSON: {_first_error_line(exc)}"


def _json_lines(body: bytes) -> list[Any] | None:
    """Parse ``body`` as JSON lines, or None when it does not look like JSON lines.

    It is JSON lines when it has at least two non-blank lines and at least one of them is a
    JSON object on its own; a broken pretty-printed document has no such line, so it stays
    a file-level ``invalid_json`` rather than a pile of bogus line errors. Blank lines do
    not count as records; a record's position is its index among non-blank lines.
    """
    lines = [line for line in body.split(b"\n") if line.strip()]
    if len(lines) < 2:
        return None
    records: list[Any] = []
    saw_object = False
    for position, line in enumerate(lines):
        try:
            value = _loads(line)
        except _JSONDecodeError as exc:
            code, reason = _decode_error(line, exc)
            records.append(LineError(code, f"JSON line {position}: {reason}", excerpt_of_bytes(line)))
            continue
        saw_object = saw_object or isinstance(value, dict)
        records.append(value)
    return records if saw_object else None


def parse_delivery_file(data: bytes) -> ParsedFile:
    """Parse a delivery file's bytes into record slots or a file-level rejection."""
    body = data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data
    if not body.strip():
        return ParsedFile(FileLayout.EMPTY, [])
    try:
        value = _loads(body)
    except _JSONDecodeError as exc:
        lines = _json_lines(body)
        if lines is not None:
            return ParsedFile(FileLayout.JSON_LINES, lines)
        code, reason = _decode_error(body, exc)
        return ParsedFile(FileLayout.REJECTED, [], error_code=code, error=reason, excerpt=excerpt_of_bytes(body))
    if value.__class__ is list:
        return ParsedFile(FileLayout.ARRAY, value)
    if value.__class__ is dict:
        return ParsedFile(FileLayout.OBJECT, [value])
    # A bare number, string or null: one record that is not an object (quarantined by the caller).
    return ParsedFile(FileLayout.SCALAR, [value])


def guard_depth(data: bytes, records: list[Any]) -> list[Any]:
    """``records`` with each record nested too deeply to write back as JSON replaced by a LineError.

    Free for ordinary files: only a file with more than MAX_WRITABLE_DEPTH brackets is checked
    record by record (a real record has a few dozen).
    """
    if data.count(b"[") + data.count(b"{") <= MAX_WRITABLE_DEPTH:
        return records
    checked = list(records)
    for position, record in enumerate(checked):
        if record.__class__ is LineError:
            continue
        try:
            _dumps(record)
        except TypeError as exc:
            if "Recursion" not in str(exc):
                continue  # not depth: compact_json's fallback writes it
            checked[position] = LineError(
                TOO_DEEPLY_NESTED,
                f"record {position} is nested more than {MAX_WRITABLE_DEPTH} levels deep",
                _excerpt_repr.repr(record)[:EXCERPT_CHARS],
            )
    return checked
