"""The file index of a delivery's images: size, sha256 and media type of every file.

Media types come from the bytes, never from the name: DICOM Part 10 (``DICM`` after the
128-byte preamble), PDF, PNG, JPEG, GIF, TIFF, else ``application/octet-stream``. A bare
DICOM dataset (no preamble, no file meta, like the classic ``CR-MONO1-10-chest``) has no
magic; :func:`looks_like_bare_dicom` flags a candidate by its first tag and the header
reader decides. A file *claims* to be DICOM when it has the Part 10 magic or a DICOM file
extension: if such a file cannot be read it is quarantined (``unreadable_dicom``) rather
than silently indexed as opaque bytes.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medlake.errors import DicomError
from medlake.lake import raw_schema
from medlake.lake.dicom_headers import read_header
from medlake.lake.files import HEAD_BYTES, FileDigest, hash_stream
from medlake.lake.parts import TableColumns
from medlake.lake.records import Quarantine
from medlake.vocab import Entity, MediaType, QuarantineReason

# Plain strings (an image_files column per file; see records._LIST).
DICOM_MEDIA_TYPE = MediaType.DICOM.value
OCTET_STREAM = MediaType.OCTET_STREAM.value
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")
__all__ = [
    "HEAD_BYTES",
    "FileFacts",
    "ImageIndex",
    "claims_dicom",
    "looks_like_bare_dicom",
    "read_file_facts",
    "sniff_media_type",
]

_MAGIC: tuple[tuple[int, bytes, str], ...] = tuple(
    (offset, magic, media_type.value)
    for offset, magic, media_type in (
        (128, b"DICM", MediaType.DICOM),
        (0, b"%PDF", MediaType.PDF),
        (0, b"\x89PNG\r\n\x1a\n", MediaType.PNG),
        (0, b"\xff\xd8\xff", MediaType.JPEG),
        (0, b"GIF87a", MediaType.GIF),
        (0, b"GIF89a", MediaType.GIF),
        (0, b"II*\x00", MediaType.TIFF),
        (0, b"MM\x00*", MediaType.TIFF),
    )
)

# Groups a bare (preamble-less) dataset starts with: file meta (0002) or identification (0008).
_BARE_DICOM_FIRST_GROUPS = (0x0002, 0x0008)


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the bytes of one file say, read once: size, sha256, sniffed media type, first bytes."""

    size_bytes: int
    sha256: str
    media_type: str
    head: bytes


def sniff_media_type(head: bytes) -> str:
    """Media type from magic numbers in the first bytes; octet-stream when nothing matches."""
    for offset, magic, media_type in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return media_type
    return OCTET_STREAM


def looks_like_bare_dicom(head: bytes) -> bool:
    """True when the file may be a DICOM dataset without preamble: it starts with a low group tag."""
    if len(head) < 8:
        return False
    group, element = struct.unpack_from("<HH", head, 0)
    return group in _BARE_DICOM_FIRST_GROUPS and element < 0x0100


def claims_dicom(file_name: str, head: bytes) -> bool:
    """A file that says it is DICOM (magic or extension) and so must parse, or be quarantined."""
    return sniff_media_type(head) == DICOM_MEDIA_TYPE or file_name.lower().endswith(DICOM_EXTENSIONS)


def read_file_facts(path: Path) -> FileFacts:
    """Size, sha256 and sniffed media type of a file the caller trusts (not a delivery's: see lake.files)."""
    with open(path, "rb") as handle:
        digest = hash_stream(handle)
    return FileFacts(digest.size_bytes, digest.sha256, sniff_media_type(digest.head), digest.head)


class ImageIndex:
    """The image_files and dicom_instances rows of one batch."""

    def __init__(self, quarantine: Quarantine) -> None:
        self.quarantine = quarantine
        self.images = TableColumns(raw_schema.IMAGE_FILES)
        self.dicoms = TableColumns(raw_schema.DICOM_INSTANCES)
        self.media_types: Counter[str] = Counter()

    def add(self, file_index: int, file_name: str, handle: BinaryIO, digest: FileDigest) -> int:
        """Index one image file (hashed already; ``handle`` open on it); returns 1 if quarantined, else 0.

        A file that looks like DICOM has its header read from the same open file; one that
        *claims* DICOM (magic or extension) and cannot be read is quarantined, and still indexed.
        """
        media_type = sniff_media_type(digest.head)
        claimed = claims_dicom(file_name, digest.head)
        header = None
        if claimed or looks_like_bare_dicom(digest.head):
            try:
                header = read_header(handle, file_size=digest.size_bytes)
                media_type = DICOM_MEDIA_TYPE
            except DicomError as exc:
                if claimed:
                    code = QuarantineReason.UNREADABLE_DICOM
                    self.quarantine.add(file_index, Entity.IMAGE, None, None, code, str(exc), None)
        self.images.append_row(
            file_index,
            file_name=file_name,
            size_bytes=digest.size_bytes,
            media_type=media_type,
            is_dicom=header is not None,
        )
        self.media_types[media_type] += 1
        if header is not None:
            self.dicoms.append_row(file_index, file_name=file_name, **header)
        return 1 if claimed and header is None else 0
