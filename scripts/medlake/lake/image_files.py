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

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

DICOM_MEDIA_TYPE = "application/dicom"
OCTET_STREAM = "application/octet-stream"
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")

# Enough for every magic number, and for a first look at a bare DICOM dataset.
HEAD_BYTES = 4096
_HASH_BLOCK = 1 << 20

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (128, b"DICM", DICOM_MEDIA_TYPE),
    (0, b"%PDF", "application/pdf"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
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
    """Hash a file in blocks (images can be large) and keep its first bytes for sniffing."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            if not head:
                head = block[:HEAD_BYTES]
            digest.update(block)
            size += len(block)
    return FileFacts(size_bytes=size, sha256=digest.hexdigest(), media_type=sniff_media_type(head), head=head)
