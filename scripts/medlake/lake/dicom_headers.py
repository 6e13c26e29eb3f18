"""The ONE hardened DICOM reader (:func:`read_dicom`), and one header as a ``raw/dicom_instances`` row.

A leaf module: it imports nothing of medlake but its errors, so the lake, ``scan-dicom`` and
the PACS loop can all use it.

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

import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from medlake.errors import DicomError

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


def read_dicom(source: Path | BinaryIO, *, file_size: int | None = None, pixels: bool = False) -> Any:
    """Read a DICOM instance, refusing what pydicom would accept half-read; a ``pydicom.Dataset``.

    ``source`` is a path or a seekable binary file object, read from its start (the lake passes the
    descriptor :class:`medlake.lake.files.DeliveryRoot` opened, so nothing is re-opened by
    name). The header is read first (``stop_before_pixels``) and checked: no element runs
    past the end of the file, a defined-length Pixel Data fits, a header without pixel data
    is not an image header and does not end in a torn element, the SOP Instance UID is
    there. With ``pixels=True`` the whole dataset is then read (pixels decoded lazily by
    pydicom, which needs the PACS extra's decoders for compressed syntaxes). Raises
    :class:`~medlake.errors.DicomError` with a one-line reason.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return read_dicom(handle, file_size=file_size, pixels=pixels)
    import pydicom  # heavy; only image landing and the PACS loop need it

    size = file_size if file_size is not None else source.seek(0, os.SEEK_END)
    source.seek(0)
    with warnings.catch_warnings():
        # pydicom warns about every odd value in real-world headers; the lake keeps the raw text.
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(source, stop_before_pixels=True, force=True)
            stopped_at = source.tell()
            last_end = _check_not_truncated(dataset, size)
            if stopped_at >= size:
                _check_ends_cleanly(dataset, last_end, size)
            else:
                _check_pixel_data_fits(source, stopped_at, size, dataset)
            if pixels:
                source.seek(0)
                dataset = pydicom.dcmread(source, force=True)
        except DicomError:
            raise
        except Exception as exc:  # pydicom raises many types on hostile bytes; all mean "unreadable"
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise DicomError(f"cannot parse DICOM header: {reason[:300]}") from exc
    if not _text(dataset.get("SOPInstanceUID")):
        raise DicomError("no SOP Instance UID in the header (not a DICOM instance, or cut short)")
    return dataset


def read_header(source: Path | BinaryIO, *, file_size: int) -> dict[str, Any]:
    """One file's DICOM header as DICOM_INSTANCES' non-lineage columns (except file_name).

    Raises DicomError with a one-line reason when the file is not a readable DICOM instance.
    """
    dataset = read_dicom(source, file_size=file_size)
    meta = dataset.file_meta
    row: dict[str, Any] = {"has_file_meta": len(meta) > 0}
    for column, keyword in TEXT_ATTRIBUTES:
        row[column] = _text(dataset.get(keyword))
    for column, keyword in INT_ATTRIBUTES:
        row[column] = _int(dataset.get(keyword))
    row["photometric_interpretation"] = _text(dataset.get("PhotometricInterpretation"))
    row["transfer_syntax_uid"] = _text(meta.get("TransferSyntaxUID"))
    return row
