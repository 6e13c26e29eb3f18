"""The de-identified export's rows and the PHI check's scope, from the manifest's internal columns.

* :func:`subjects`: each row's patient group (pseudonym, or ``exam:<key>``) and its date offset;
* :func:`known_identifiers`: what the lake knows for each exported exam (:mod:`.identifiers`);
* :func:`deidentify_rows`: ``published_at`` shifted by the row's offset, ``source`` left out unless
  opted in, ``report_text`` scrubbed of the exam's identifiers with its dates shifted;
* :func:`check_scope`: the identifiers and per-exam dates the PHI check looks for.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from medlake.dataset.deid.keys import Keys, Subject
from medlake.dataset.identifiers import ExamIdentifiers, Matcher, from_dicom, scrub_text, staff_names
from medlake.dataset.phi_check import CheckScope


@dataclass
class KnownIdentifiers:
    exams: dict[str, ExamIdentifiers] = field(default_factory=dict)
    staff: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.staff_texts: dict[str, str] = {}

    def add_staff(self, names: set[str]) -> None:
        self.staff |= names
        spellings = ExamIdentifiers()
        for name in names:
            spellings.add_text(name, "staff name")
        self.staff_texts.update(spellings.texts)

    def scrubber(self) -> Matcher:
        """What to scrub from every report: the identifiers of every exported exam (a report may name
        another patient than its own), every staff and every source name."""
        texts = set(self.staff_texts) | self.sources
        for exam in self.exams.values():
            texts |= set(exam.texts)
        return Matcher(texts)


def group_of(patient_key: str | None, exam_key: str) -> str:
    """The split and date-offset unit: the patient's pseudonym, else the exam itself."""
    return patient_key or f"exam:{exam_key}"


def subjects(rows: pa.Table, keys: Keys) -> list[Subject]:
    return [
        keys.subject(group_of(patient, exam))
        for patient, exam in zip(rows["patient_key"].to_pylist(), rows["exam_key"].to_pylist(), strict=True)
    ]


def known_identifiers(lake: Path, rows: pa.Table) -> KnownIdentifiers:
    """Every identifier the lake holds for the exams in ``rows`` (which carry the internal columns)."""
    known = KnownIdentifiers()
    known.add_staff(staff_names(lake))
    lake_root = str(Path(lake).resolve())
    columns = rows.select(
        ["exam_key", "source_patient_id", "object_relative_path", "published_at", "source"]
    ).to_pydict()
    for exam, patient_id, relative, published, source in zip(*columns.values(), strict=True):
        found = known.exams.setdefault(exam, ExamIdentifiers())
        found.add_text(patient_id, "PatientID")
        found.add_date(published)
        if source:
            known.sources.add(source)
        if relative:
            path = os.path.join(lake_root, relative)
            if os.path.isfile(path):
                from_dicom(path, found)
    return known


def deidentify_rows(
    rows: pa.Table, keys: Keys, known: KnownIdentifiers, *, include_source: bool
) -> tuple[pa.Table, list[Subject]]:
    """The manifest's published columns de-identified (see the module docstring); also the subjects."""
    row_subjects = subjects(rows, keys)
    offsets = [dt.timedelta(days=subject.date_offset_days) for subject in row_subjects]
    published = [
        None if value is None else value + offset
        for value, offset in zip(rows["published_at"].to_pylist(), offsets, strict=True)
    ]
    rows = rows.set_column(
        rows.schema.get_field_index("published_at"),
        "published_at",
        pa.array(published, rows.schema.field("published_at").type),
    )
    scrubber = known.scrubber()
    texts = [
        None if text is None else scrub_text(text, scrubber, subject.date_offset_days)
        for text, subject in zip(rows["report_text"].to_pylist(), row_subjects, strict=True)
    ]
    rows = rows.set_column(rows.schema.get_field_index("report_text"), "report_text", pa.array(texts, pa.string()))
    if not include_source:
        rows = rows.drop_columns(["source"])
    return rows, row_subjects


def check_scope(
    known: KnownIdentifiers, rows: pa.Table, keys: Keys, *, include_source: bool, file_exams: dict[str, str]
) -> CheckScope:
    texts: dict[str, str] = {}
    for exam in known.exams.values():
        texts.update(exam.texts)
    texts.update(known.staff_texts)
    if not include_source:
        for source in known.sources:
            source_names = ExamIdentifiers()
            source_names.add_text(source, "institution (source)")
            texts.update(source_names.texts)
    exam_dates: dict[str, set[dt.date]] = {}
    for patient, exam in zip(rows["patient_key"].to_pylist(), rows["exam_key"].to_pylist(), strict=True):
        real = known.exams.get(exam, ExamIdentifiers()).dates
        offset = dt.timedelta(days=keys.date_offset_days(group_of(patient, exam)))
        # a real date equal to one of the exam's shifted dates cannot be told from it by value
        exam_dates[exam] = real - {date + offset for date in real}
    return CheckScope(texts=texts, exam_dates=exam_dates, file_exams=file_exams)
