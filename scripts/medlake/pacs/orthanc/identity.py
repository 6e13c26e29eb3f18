"""Is the file Orthanc holds the same DICOM instance as a file on disk?

Orthanc keeps the first file it receives for a SOP Instance UID and answers ``AlreadyStored``
to every later one. Byte equality is the wrong test for "same instance": a file Orthanc
received over DICOM (C-STORE) carries the File Meta Information Orthanc wrote (its own
implementation UID and version, the sender's AE title), and a bare dataset without File Meta
gains one. Group 0002 describes the file, not the instance, so it is left out: two files are
the same instance when their datasets (every element outside group 0002, pixel data included)
are equal. Elements are compared as encoded when both files use the same transfer syntax, and
as values otherwise (e.g. one sent implicit, one stored explicit VR).
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medlake.pacs.orthanc.client import OrthancClient

_FILE_META_GROUP = 0x0002


def _read(data: bytes) -> Dataset:
    return dcmread(BytesIO(data), force=True)


def _same_encoding(a: Dataset, b: Dataset) -> bool:
    return (a.is_little_endian, a.is_implicit_VR) == (b.is_little_endian, b.is_implicit_VR)


def _tags(dataset: Dataset) -> list:
    return [tag for tag in dataset.keys() if tag.group != _FILE_META_GROUP]  # noqa: SIM118 (iter yields elements)


def datasets_equal(a: Dataset, b: Dataset) -> bool:
    """Equal elements outside group 0002, recursively through sequences."""
    tags = _tags(a)
    if tags != _tags(b):
        return False
    raw_comparable = _same_encoding(a, b)
    for tag in tags:
        raw_a, raw_b = a.get_item(tag), b.get_item(tag)
        both_raw = isinstance(raw_a, RawDataElement) and isinstance(raw_b, RawDataElement)
        if raw_comparable and both_raw and raw_a.value == raw_b.value:
            continue  # identical encoded bytes: no need to decode (pixel data, mostly)
        element_a, element_b = a[tag], b[tag]
        if element_a.VR == "SQ" or element_b.VR == "SQ":
            if element_a.VR != element_b.VR or len(element_a.value) != len(element_b.value):
                return False
            if not all(datasets_equal(x, y) for x, y in zip(element_a.value, element_b.value, strict=True)):
                return False
        elif element_a.value != element_b.value:
            return False
    return True


def same_instance(a: bytes, b: bytes) -> bool:
    """Whether two DICOM files hold the same instance (see the module docstring).

    Unreadable input is never "the same": the caller then treats the files as different.
    """
    if a == b:
        return True
    try:
        return datasets_equal(_read(a), _read(b))
    except (InvalidDicomError, ValueError, TypeError, KeyError, AttributeError, EOFError, OSError):
        return False


class StoredCopies:
    """Answers "does Orthanc hold this file's instance?" for ``AlreadyStored`` uploads.

    The stored file's MD5 (one small request) settles the usual case, a byte-identical file;
    only when it differs is the stored file downloaded and compared without group 0002.
    """

    def __init__(self, client: OrthancClient, compare: Callable[[bytes, bytes], bool] = same_instance) -> None:
        self.client = client
        self.compare = compare
        self._md5: dict[str, str] = {}
        self._verdicts: dict[tuple[str, str], bool] = {}

    def holds(self, orthanc_id: str, path: Path, md5: str) -> bool:
        if orthanc_id not in self._md5:
            self._md5[orthanc_id] = self.client.stored_md5(orthanc_id)
        if self._md5[orthanc_id] == md5:
            return True
        key = (orthanc_id, md5)
        if key not in self._verdicts:
            self._verdicts[key] = self.compare(self.client.download(orthanc_id), Path(path).read_bytes())
        return self._verdicts[key]
