"""The PHI check every export passes before it is published, and ``medlake dataset verify-deid``.

Every file of the export is searched for the identifiers the lake holds for the exported
patients (:mod:`medlake.dataset.identifiers`): names (and their parts), patient IDs, accession
numbers, institution and station names, source names, labeller and reporter names, anywhere in
any file; birth dates and real exam dates in the files of that exam (its image, its report, its
manifest row). DICOMs are searched attribute by attribute (sequences, file meta and preamble
included; only the pixel data is skipped), PNGs chunk by chunk (all but the pixel data), JPEGs
segment by segment up to the scan data, the manifest cell by cell, text line by line, any other
file byte by byte. A finding names the file, the field and what kind of identifier it is; the
value itself is never printed (a log must not leak what the check caught).

A real date that equals a shifted date of the same exam cannot be told apart from it by value
and is not searched for (the offset is at least a year, so this needs two of the exam's dates to
lie exactly that offset apart).
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pyarrow.parquet as pq

from medlake.dataset.identifiers import Matcher, date_spellings, parse_date
from medlake.errors import DatasetError

_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_TEXT_SUFFIXES = (".txt", ".md", ".json", ".csv")
MAX_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Finding:
    file: str  # relative to the export
    field: str  # attribute path, chunk, column[row], line
    kind: str  # what was found: "patient name", "PatientID", "birth or exam date", ...

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.kind}"


class PhiFoundError(DatasetError):
    """An export holds an identifier the lake knows: not published."""

    def __init__(self, findings: list[Finding], where: str) -> None:
        self.findings = findings
        shown = "\n  ".join(str(finding) for finding in findings[:MAX_SHOWN])
        more = f"\n  ... and {len(findings) - MAX_SHOWN} more" if len(findings) > MAX_SHOWN else ""
        super().__init__(f"{where}: {len(findings)} identifier(s) the lake knows found:\n  {shown}{more}")


@dataclass
class CheckScope:
    """What to look for where: identifiers for every file, dates per exam, which file is which exam's."""

    texts: dict[str, str] = field(default_factory=dict)  # identifier -> kind
    exam_dates: dict[str, set[dt.date]] = field(default_factory=dict)
    file_exams: dict[str, str] = field(default_factory=dict)  # relative path -> exam_key

    def __post_init__(self) -> None:
        self._texts = Matcher(self.texts)

    def text_findings(self, text: str) -> Iterator[str]:
        for _, _, kind in self._texts.find(text):
            yield kind

    def date_findings(self, text: str, exam: str | None) -> bool:
        found = _date_pattern(frozenset(self.exam_dates.get(exam, ()))) if exam else None
        return bool(found and found.search(text))

    def has_date(self, value: dt.date, exam: str | None) -> bool:
        return bool(exam) and value in self.exam_dates.get(exam, ())


@cache
def _date_pattern(dates: frozenset[dt.date]) -> re.Pattern[str] | None:
    spellings = sorted({spelling for date in dates for spelling in date_spellings(date)}, key=len, reverse=True)
    if not spellings:
        return None
    return re.compile(r"(?<!\d)(?:" + "|".join(re.escape(s) for s in spellings) + r")(?!\d)")


def check_export(directory: Path, scope: CheckScope) -> list[Finding]:
    """Every finding in every file under ``directory`` (empty: nothing the lake knows was found)."""
    directory = Path(directory)
    findings: list[Finding] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        findings += _check_file(path, relative, scope)
    return findings


def _check_file(path: Path, relative: str, scope: CheckScope) -> list[Finding]:
    exam = scope.file_exams.get(relative)
    with open(path, "rb") as handle:
        head = handle.read(132)
    if head[128:132] == b"DICM" or path.suffix.lower() == ".dcm":
        found = _check_dicom(path, relative, exam, scope)
        if found is not None:
            return found
    if path.suffix == ".parquet":
        return _check_parquet(path, relative, scope)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        parts = _png_chunks(path.read_bytes())
    elif head.startswith(b"\xff\xd8"):
        parts = _jpeg_segments(path.read_bytes())
    elif path.suffix.lower() in _TEXT_SUFFIXES:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        parts = ((f"line {number}", line) for number, line in enumerate(lines, 1))
    else:
        parts = iter([("bytes", path.read_bytes().decode("latin-1"))])
    return _scan(relative, parts, exam, scope)


def _scan(relative: str, parts, exam: str | None, scope: CheckScope) -> list[Finding]:
    findings = []
    for where, text in parts:
        findings += [Finding(relative, where, kind) for kind in dict.fromkeys(scope.text_findings(text))]
        if scope.date_findings(text, exam):
            findings.append(Finding(relative, where, "birth or real exam date"))
    return findings


def _check_dicom(path: Path, relative: str, exam: str | None, scope: CheckScope) -> list[Finding] | None:
    import pydicom

    try:
        dataset = pydicom.dcmread(path, force=True)
    except Exception:
        return None  # not readable as DICOM: searched byte by byte instead
    parts = [("preamble", (dataset.preamble or b"").decode("latin-1"))]
    parts += list(_dicom_values(getattr(dataset, "file_meta", []), "file meta "))
    parts += list(_dicom_values(dataset, ""))
    findings = _scan(relative, parts, exam, scope)
    findings += [
        Finding(relative, where, "birth or real exam date")
        for where, value in _dicom_dates(dataset, "")
        if scope.has_date(value, exam)
    ]
    return list(dict.fromkeys(findings))


def _dicom_values(dataset, prefix: str) -> Iterator[tuple[str, str]]:
    for element in dataset:
        name = prefix + (element.keyword or str(element.tag))
        if element.VR == "SQ":
            for index, item in enumerate(element.value or ()):
                yield from _dicom_values(item, f"{name}[{index}].")
        elif int(element.tag) in _PIXEL_TAGS:
            continue
        elif isinstance(element.value, bytes):
            yield name, element.value.decode("latin-1")
        elif element.value is not None:
            values = element.value if element.VM > 1 and not isinstance(element.value, str) else [element.value]
            yield name, "\\".join(str(value) for value in values)


def _dicom_dates(dataset, prefix: str) -> Iterator[tuple[str, dt.date]]:
    for element in dataset:
        name = prefix + (element.keyword or str(element.tag))
        if element.VR == "SQ":
            for index, item in enumerate(element.value or ()):
                yield from _dicom_dates(item, f"{name}[{index}].")
        elif element.VR in ("DA", "DT") and element.value:
            values = element.value if element.VM > 1 else [element.value]
            for value in values:
                date = parse_date(str(value))
                if date is not None:
                    yield name, date


def _check_parquet(path: Path, relative: str, scope: CheckScope) -> list[Finding]:
    table = pq.read_table(path)
    findings: list[Finding] = []
    metadata = table.schema.metadata or {}
    header = [("schema", " ".join(table.schema.names))]
    header += [("metadata", (key + b" " + value).decode("utf-8", "replace")) for key, value in metadata.items()]
    findings += _scan(relative, header, None, scope)
    columns = table.to_pydict()
    exams = columns.get("exam_key") or [None] * table.num_rows
    for name, values in columns.items():
        for row, value in enumerate(values):
            if value is None:
                continue
            exam = exams[row]
            where = f"{name}[row {row}]"
            if isinstance(value, dt.date):
                if scope.has_date(value.date() if isinstance(value, dt.datetime) else value, exam):
                    findings.append(Finding(relative, where, "birth or real exam date"))
                continue
            findings += _scan(relative, [(where, str(value))], exam, scope)
    return findings


def _png_chunks(data: bytes) -> Iterator[tuple[str, str]]:
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind != b"IDAT":  # the compressed pixels; every other chunk can hold text
            yield f"PNG {kind.decode('latin-1')} chunk", _inflate_if_text(kind, body).decode("latin-1")
        position += 12 + length
    if position < len(data):
        yield "bytes after IEND", data[position:].decode("latin-1")


def _inflate_if_text(kind: bytes, body: bytes) -> bytes:
    """A zTXt/iTXt chunk's text, decompressed (a compressed name is still a name)."""
    import zlib

    try:
        if kind == b"zTXt":
            keyword, rest = body.split(b"\x00", 1)
            return keyword + b" " + zlib.decompress(rest[1:])
        if kind == b"iTXt":
            keyword, rest = body.split(b"\x00", 1)
            compressed, rest = rest[0], rest[2:]
            language, rest = rest.split(b"\x00", 1)
            translated, text = rest.split(b"\x00", 1)
            return b" ".join((keyword, language, translated, zlib.decompress(text) if compressed else text))
    except (ValueError, IndexError, zlib.error):
        pass
    return body


def _jpeg_segments(data: bytes) -> Iterator[tuple[str, str]]:
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: entropy-coded pixels follow
            return
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        yield f"JPEG segment FF{marker:02X}", data[position + 4 : position + 2 + length].decode("latin-1")
        position += 2 + length
    if position < len(data):
        yield "bytes", data[position:].decode("latin-1")
