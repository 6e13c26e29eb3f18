"""Header-only DICOM reading into ``raw/dicom_instances``, and ``medlake scan-dicom``.

Only the header is read (``stop_before_pixels``): a CR can be 7 MB of pixels behind a few
KB of header. Files without preamble or file meta (a bare dataset, e.g. the classic
``CR-MONO1-10-chest``) are read with ``force=True``; their ``transfer_syntax_uid`` is NULL
and ``has_file_meta`` False. PatientName and other direct identifiers are never read into
the lake (PHI minimisation): only the ids needed to link images to exams and studies.

pydicom is lenient: a file cut short inside its header parses without complaint into a
partial dataset. :func:`read_header` therefore checks that no element runs past the end of
the file, that a defined-length Pixel Data fits in the file, that a header without pixel
data is not an image header and does not end in a torn element, and that the SOP Instance
UID is there; otherwise it raises :class:`~medlake.errors.DicomError` and the file is
quarantined (``unreadable_dicom``).
"""

from __future__ import annotations

import datetime as dt
import struct
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlake.errors import DicomError, LandingError

# (raw_schema column, DICOM keyword) for the text columns of DICOM_INSTANCES.
TEXT_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("patient_id", "PatientID"),
    ("patient_sex", "PatientSex"),
    ("patient_age", "PatientAge"),
    ("study_instance_uid", "StudyInstanceUID"),
    ("series_instance_uid", "SeriesInstanceUID"),
    ("sop_instance_uid", "SOPInstanceUID"),
    ("sop_class_uid", "SOPClassUID"),
    ("modality", "Modality"),
    ("body_part_examined", "BodyPartExamined"),
    ("view_position", "ViewPosition"),
    ("study_date", "StudyDate"),
    ("study_description", "StudyDescription"),
    ("series_number", "SeriesNumber"),
    ("instance_number", "InstanceNumber"),
    ("manufacturer", "Manufacturer"),
)
INT_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("rows", "Rows"),
    ("columns", "Columns"),
    ("bits_allocated", "BitsAllocated"),
    ("bits_stored", "BitsStored"),
)
HEADER_COLUMNS: tuple[str, ...] = (
    "has_file_meta",
    *(column for column, _ in TEXT_ATTRIBUTES),
    *(column for column, _ in INT_ATTRIBUTES),
    "photometric_interpretation",
    "transfer_syntax_uid",
)

_PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00009, 0x7FE00008)
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Explicit-VR elements whose length field is 4 bytes (after 2 reserved bytes).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}


def _text(value: Any) -> str | None:
    """A header value as text; empty (DICOM's 'unknown' for type 2 attributes) becomes NULL."""
    if value is None:
        return None
    # A MultiValue is joined with DICOM's own separator, the backslash.
    multi = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    text = "\\".join(str(item) for item in value) if multi else str(value)
    text = text.strip("\x00 ")
    return text or None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _check_not_truncated(dataset: Any, file_size: int) -> int | None:
    """Raise when a top-level element claims more bytes than the file holds.

    Returns where the last top-level element ends (None when it has undefined length).
    """
    last_tell, last_end = -1, None
    tags = list(dataset.keys())  # iterating the dataset itself would convert every element
    for tag in tags:
        element = dataset.get_item(tag, keep_deferred=True)
        value_tell = getattr(element, "value_tell", None)
        length = getattr(element, "length", None)
        if value_tell is None or length is None:
            continue
        defined = length != _UNDEFINED_LENGTH
        if defined and value_tell + length > file_size:
            raise DicomError(
                f"header truncated: element {tag} needs {length} bytes at offset {value_tell}, "
                f"file has {file_size} bytes"
            )
        if value_tell > last_tell:
            last_tell, last_end = value_tell, (value_tell + length if defined else None)
    return last_end


def _check_ends_cleanly(dataset: Any, last_end: int | None, file_size: int) -> None:
    """For a file without pixel data: an image header, or a torn element at the end, means it was cut short."""
    if "Rows" in dataset or "Columns" in dataset:
        raise DicomError("image header but no pixel data: the file was cut short")
    if last_end is not None and last_end < file_size:
        raise DicomError(f"{file_size - last_end} bytes after the last complete element: the file was cut short")


def _check_pixel_data_fits(handle: Any, stopped_at: int, file_size: int, dataset: Any) -> None:
    """After a stop_before_pixels read, check the Pixel Data element's declared length fits the file."""
    handle.seek(stopped_at)
    element_header = handle.read(12)
    if len(element_header) < 8:
        raise DicomError(f"pixel data element truncated at offset {stopped_at}")
    is_implicit, is_little = dataset.original_encoding
    endian = "<" if is_little in (True, None) else ">"
    group, element = struct.unpack(endian + "HH", element_header[:4])
    if (group << 16 | element) not in _PIXEL_DATA_TAGS:
        return
    if is_implicit or element_header[4:6] not in _LONG_VRS:
        header_size, (length,) = 8, struct.unpack(endian + "L", element_header[4:8])
    else:
        if len(element_header) < 12:
            raise DicomError(f"pixel data element truncated at offset {stopped_at}")
        header_size, (length,) = 12, struct.unpack(endian + "L", element_header[8:12])
    if length != _UNDEFINED_LENGTH and stopped_at + header_size + length > file_size:
        present = file_size - stopped_at - header_size
        raise DicomError(f"pixel data truncated: {length} bytes declared, {present} present")


def read_header(path: Path, *, file_size: int) -> dict[str, Any]:
    """Read one file's DICOM header into DICOM_INSTANCES' non-lineage columns (except file_name).

    Raises DicomError with a one-line reason when the file is not a readable DICOM instance.
    """
    import pydicom  # heavy; only image landing needs it

    with warnings.catch_warnings():
        # pydicom warns about every odd value in real-world headers; the lake keeps the raw text.
        warnings.simplefilter("ignore")
        try:
            with open(path, "rb") as handle:
                dataset = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
                stopped_at = handle.tell()
                last_end = _check_not_truncated(dataset, file_size)
                if stopped_at >= file_size:
                    _check_ends_cleanly(dataset, last_end, file_size)
                else:
                    _check_pixel_data_fits(handle, stopped_at, file_size, dataset)
            meta = dataset.file_meta
            row: dict[str, Any] = {"has_file_meta": len(meta) > 0}
            for column, keyword in TEXT_ATTRIBUTES:
                row[column] = _text(dataset.get(keyword))
            for column, keyword in INT_ATTRIBUTES:
                row[column] = _int(dataset.get(keyword))
            row["photometric_interpretation"] = _text(dataset.get("PhotometricInterpretation"))
            row["transfer_syntax_uid"] = _text(meta.get("TransferSyntaxUID"))
        except DicomError:
            raise
        except Exception as exc:  # pydicom raises many types on hostile bytes; all mean "unreadable"
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise DicomError(f"cannot parse DICOM header: {reason[:300]}") from exc
    if row["sop_instance_uid"] is None:
        raise DicomError("no SOP Instance UID in the header (not a DICOM instance, or cut short)")
    return row


# --- medlake scan-dicom ------------------------------------------------------------


@dataclass(frozen=True)
class ScanSummary:
    """What ``medlake scan-dicom`` did."""

    input_dir: str
    lake: str
    delivery_date: str
    files_seen: int
    files_landed: int
    files_skipped: int
    dicom_instances: int
    media_types: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    ignored_entries: tuple[str, ...] = ()  # FIFOs, sockets, devices: listed, never read
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_dir": self.input_dir,
            "lake": self.lake,
            "delivery_date": self.delivery_date,
            "files_seen": self.files_seen,
            "files_landed": self.files_landed,
            "files_skipped_already_landed": self.files_skipped,
            "dicom_instances": self.dicom_instances,
            "media_types": dict(sorted(self.media_types.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "ignored_entries": list(self.ignored_entries),
            "seconds": round(self.seconds, 3),
        }

    def render(self) -> str:
        lines = [
            f"scan-dicom {self.input_dir} -> {self.lake} (delivery_date={self.delivery_date})",
            f"  files seen       {self.files_seen:>8}",
            f"  files landed     {self.files_landed:>8}",
            f"  already landed   {self.files_skipped:>8}  (skipped: same path and sha256 in the manifest)",
            f"  DICOM instances  {self.dicom_instances:>8}",
        ]
        for media_type, count in sorted(self.media_types.items()):
            lines.append(f"  media {media_type:<28} {count:>6}")
        if self.quarantined:
            for reason_code, count in sorted(self.quarantined.items()):
                lines.append(f"  quarantined {reason_code:<22} {count:>6}")
        else:
            lines.append("  quarantined             0")
        if self.ignored_entries:
            lines.append(f"  ignored (not regular files): {', '.join(self.ignored_entries)}")
        lines.append(f"  took {self.seconds:.2f} s")
        return "\n".join(lines)


def scan_directory(input_dir: Path, lake: Path, *, delivery_date: dt.date | None, progress: bool = True) -> ScanSummary:
    """Index every file under ``input_dir`` (recursive) into image_files, and DICOM headers into
    dicom_instances, through the same code path as ``land``'s ``images/``. Re-running adds nothing."""
    from medlake.lake import landing  # landing imports this module; import here to keep the graph acyclic

    started = time.perf_counter()
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise LandingError(f"input directory not found: {input_dir}")
    not_files: list[str] = []
    relpaths = landing.list_files(input_dir, "", not_files)
    result = landing.land_tasks(
        input_dir, Path(lake), {landing.IMAGE: relpaths}, delivery_date=delivery_date, workers=None, progress=progress
    )
    return ScanSummary(
        input_dir=str(input_dir),
        lake=str(lake),
        delivery_date=result.delivery_date.isoformat(),
        files_seen=len(relpaths),
        files_landed=result.files_landed.get(landing.IMAGE, 0),
        files_skipped=result.files_skipped.get(landing.IMAGE, 0),
        dicom_instances=result.rows.get("dicom_instances", 0),
        media_types=dict(result.media_types),
        quarantined=dict(result.quarantined),
        ignored_entries=tuple(not_files),
        seconds=time.perf_counter() - started,
    )
