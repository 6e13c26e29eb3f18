"""What ``pacs run`` reads from its input directory: files, their digests and DICOM headers.

Everything goes through the lake's one walker/reader/hasher (:class:`medlake.lake.files.DeliveryRoot`)
and its symlink policy (issue 9): a file that resolves outside the input directory is reported
``Skipped`` with the reason and never opened (no upload, no digest of the target); directory
symlinks are not followed; FIFOs and devices are never opened. Headers are read by the one
hardened DICOM reader (:func:`medlake.lake.dicom_headers.read_dicom`: truncation checks, SOP
Instance UID), so the PACS loop refuses exactly the files landing quarantines.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from medlake.errors import DicomError, FileRefused
from medlake.lake.files import DeliveryRoot, hash_stream


@dataclass(frozen=True)
class SourceFile:
    """One file under INPUT after the scan: its identity, and its header if it is DICOM."""

    path: Path
    relative: str
    sha256: str | None
    md5: str | None
    header: Dataset | None
    reason: str | None = None  # why it is not usable as DICOM (then header is None)

    @property
    def file_name(self) -> str:
        return self.path.name

    def uid(self, keyword: str) -> str | None:
        if self.header is None:
            return None
        value = self.header.get(keyword)
        return None if value is None else str(value)


def hash_file(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file medlake itself wrote (a download from Orthanc); MD5 as Orthanc reports it."""
    with open(path, "rb") as handle:
        digest = hash_stream(handle, md5=True)
    return digest.sha256, str(digest.md5)


def read_source_header(source: Path, *, root: DeliveryRoot | None = None, relative: str | None = None) -> Dataset:
    """The hardened header read, as a pydicom Dataset with File Meta (raises DicomError / FileRefused)."""
    from medlake.lake.dicom_headers import read_dicom
    from medlake.pacs.model.inference import ensure_file_meta

    try:
        if root is not None and relative is not None:
            with root.open(relative) as handle:
                header = read_dicom(handle)
        else:
            header = read_dicom(source)
    except DicomError as exc:
        raise DicomError(f"not a readable DICOM file: {exc}") from exc
    missing = [k for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if not header.get(k)]
    if missing:
        raise DicomError(f"DICOM without {', '.join(missing)}")
    try:
        ensure_file_meta(header)
    except ValueError as exc:
        raise DicomError(str(exc)) from exc
    return header


def _scan_one(root: DeliveryRoot, relative: str) -> SourceFile:
    path = Path(root.path) / relative
    try:
        digest = root.hash_file(relative, md5=True)
        header = read_source_header(path, root=root, relative=relative)
    except FileRefused as exc:
        return SourceFile(path, relative, None, None, None, reason=f"{exc.reason_code}: {exc.reason}")
    except DicomError as exc:
        return SourceFile(path, relative, digest.sha256, digest.md5, None, reason=str(exc))
    return SourceFile(path, relative, digest.sha256, digest.md5, header)


def scan_inputs(input_dir: Path, *, workers: int = 4) -> tuple[DeliveryRoot, list[SourceFile]]:
    """Every file under ``input_dir`` (sorted), hashed and header-read, or refused with a reason."""
    root = DeliveryRoot(input_dir)
    listing = root.walk()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return root, list(pool.map(lambda relative: _scan_one(root, relative), listing.files))
