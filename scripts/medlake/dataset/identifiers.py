"""The identifiers the lake itself knows for an exam, and text that carries them.

Gathered from what the lake holds, never guessed: every person name, patient ID, accession
number, institution and station name and every date in the exam's original DICOM (object
store), the exam's source (institution) and publication date, and the names of every labeller
and reporter in the raw layer. Used twice: to scrub report texts (:func:`scrub_text`) and by the
PHI check that every export passes before it is published (:mod:`medlake.dataset.phi_check`).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from medlake.lake.layout import raw_dir

REDACTED = "[REDACTED]"
MIN_LENGTH = 3  # shorter fragments ("Li", "1") would match everywhere: the full values still count
# Attributes whose values identify a patient, a visit or a place (beyond every PN, found by VR).
_IDENTIFYING_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "StudyID",
    "AdmissionID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "DeviceSerialNumber",
)
_HONORIFICS = {"dr", "dra", "sr", "sra", "srta", "mr", "mrs", "ms", "prof", "md"}
_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y")


@dataclass
class ExamIdentifiers:
    """What the lake knows of one exam: identifying texts (value -> kind) and real dates."""

    texts: dict[str, str] = field(default_factory=dict)
    dates: set[dt.date] = field(default_factory=set)

    def add_text(self, value: object, kind: str) -> None:
        for variant in variants(str(value or ""), kind):
            self.texts.setdefault(variant, kind)

    def add_date(self, value: object) -> None:
        date = parse_date(value)
        if date is not None:
            self.dates.add(date)


def variants(value: str, kind: str) -> set[str]:
    """The spellings of one identifier to look for: the value, and a name's parts and orders."""
    value = " ".join(value.replace("\x00", " ").split())
    if len(value) < MIN_LENGTH:
        return set()
    found = {value}
    if kind in ("patient name", "staff name", "person name"):
        groups = [part.strip() for part in value.split("=")]  # PN: alphabetic=ideographic=phonetic
        for group in groups:
            components = [part.strip() for part in group.split("^") if part.strip()]
            if len(components) >= 2:
                found |= {f"{components[1]} {components[0]}", f"{components[0]} {components[1]}"}
            for component in components:
                for word in re.split(r"[\s,]+", component):
                    word = word.strip(".")
                    if len(word) >= MIN_LENGTH and word.lower() not in _HONORIFICS:
                        found.add(word)
            if group:
                found.add(group.replace("^", " ").strip())
    return {item for item in found if len(item) >= MIN_LENGTH}


def parse_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value or "").strip()[:10]
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text[: 8 if fmt == "%Y%m%d" else 10], fmt).date()
        except ValueError:
            continue
    return None


def date_spellings(date: dt.date) -> set[str]:
    return {date.strftime(fmt) for fmt in _DATE_FORMATS}


def from_dicom(path: Path | str, into: ExamIdentifiers) -> None:
    """Add the identifiers of one original DICOM (every PN, the identifying attributes, every date)."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # an unreadable original is reported by the image stage; nothing to learn here
        return
    _walk(dataset, into)
    for element in getattr(dataset, "file_meta", []):
        if element.VR in ("AE", "SH", "LO"):
            into.add_text(element.value, "file meta")


def _walk(dataset, into: ExamIdentifiers) -> None:
    for element in dataset:
        vr = element.VR
        if vr == "SQ":
            for item in element.value or ():
                _walk(item, into)
        elif vr == "PN":
            for value in element.value if element.VM > 1 else [element.value]:
                into.add_text(value, "patient name" if element.keyword == "PatientName" else "person name")
        elif vr in ("DA", "DT"):
            for value in element.value if element.VM > 1 else [element.value]:
                into.add_date(value)
        elif element.keyword in _IDENTIFYING_KEYWORDS:
            kind = element.keyword
            for value in element.value if element.VM > 1 else [element.value]:
                into.add_text(value, kind)


def staff_names(lake: Path) -> set[str]:
    """Every labeller and reporter name the raw layer holds (the marts carry only pseudonyms)."""
    names: set[str] = set()
    for table, column in (("exam_labels", "labelled_by"), ("medical_reports", "reported_by")):
        parts = sorted(str(path) for path in raw_dir(lake, table).glob("delivery_date=*/*.parquet"))
        if not parts:
            continue
        rows = duckdb.sql(
            f"select distinct {column} from read_parquet(?, union_by_name = true) where {column} is not null",
            params=[parts],
        ).fetchall()
        names |= {row[0] for row in rows}
    return names


_TOKEN = re.compile(r"[^\W_]+")


def normalise(text: str) -> list[str]:
    """The words of ``text``, case-folded and without accents ("Lívia" and "LIVIA" are one word)."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in plain if not unicodedata.combining(char))
    return [word.casefold() for word in _TOKEN.findall(plain)]


class Matcher:
    """Finds known identifiers in text as whole words (word sequences for multi-word ones).

    A dictionary lookup per word sequence rather than one regular expression of every identifier:
    an export of a hundred thousand patients holds about a million spellings, and this stays linear
    in the text. "MRN-100001", "mrn 100001" and "MRN/100001" are the same identifier.
    """

    def __init__(self, identifiers: dict[str, str] | Iterable[str]) -> None:
        kinds = identifiers if isinstance(identifiers, dict) else dict.fromkeys(identifiers, "identifier")
        self._kinds: dict[tuple[str, ...], str] = {}
        for value, kind in kinds.items():
            words = tuple(normalise(value))
            if words and len(" ".join(words)) >= MIN_LENGTH:
                self._kinds.setdefault(words, kind)
        self._longest = min(8, max((len(words) for words in self._kinds), default=0))

    def __bool__(self) -> bool:
        return bool(self._kinds)

    def find(self, text: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, kind) of every identifier in ``text``, longest first, not overlapping."""
        if not self._kinds:
            return
        plain = unicodedata.normalize("NFC", text)
        tokens = list(_TOKEN.finditer(plain))
        words = [tuple(normalise(token.group(0))) for token in tokens]
        index = 0
        while index < len(tokens):
            for length in range(min(self._longest, len(tokens) - index), 0, -1):
                key = tuple(word for part in words[index : index + length] for word in part)
                kind = self._kinds.get(key)
                if kind is not None:
                    yield tokens[index].start(), tokens[index + length - 1].end(), kind
                    index += length
                    break
            else:
                index += 1

    def redact(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        pieces, last = [], 0
        for start, end, _ in self.find(text):
            pieces += [text[last:start], REDACTED]
            last = end
        return "".join(pieces) + text[last:]


_TEXT_DATE = re.compile(
    r"(?<!\d)(?:(?P<iso>(?:19|20)\d\d-[01]\d-[0-3]\d)|(?P<compact>(?:19|20)\d\d[01]\d[0-3]\d)"
    r"|(?P<dmy>[0-3]?\d(?P<sep>[/.-])[01]?\d(?P=sep)(?:19|20)\d\d))(?!\d)"
)


def shift_dates_in_text(text: str, days: int) -> str:
    """Every date written in ``text`` (ISO, YYYYMMDD, DD/MM/YYYY and its . - forms) moved by ``days``."""

    def shifted(match: re.Match[str]) -> str:
        raw = match.group(0)
        if match.group("iso"):
            fmts = ("%Y-%m-%d",)
        elif match.group("compact"):
            fmts = ("%Y%m%d",)
        else:
            sep = match.group("sep")
            fmts = (f"%d{sep}%m{sep}%Y", f"%m{sep}%d{sep}%Y")  # day first (the sample is Brazilian)
        for fmt in fmts:
            try:
                date = dt.datetime.strptime(raw, fmt).date()
            except ValueError:
                continue
            return (date + dt.timedelta(days=days)).strftime(fmt)
        return REDACTED  # looks like a date, is none: it goes rather than stays

    return _TEXT_DATE.sub(shifted, text)


def scrub_text(text: str, identifiers: Matcher, days: int) -> str:
    """``text`` with every known identifier replaced by [REDACTED] and every date shifted by ``days``."""
    return shift_dates_in_text(identifiers.redact(text), days)
