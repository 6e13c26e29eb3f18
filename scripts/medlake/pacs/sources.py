"""What ``pacs run`` reads from its input directory: files, their digests and DICOM headers.

One symlink policy with the lake (issue 9): a file symlink is followed only when its target
resolves inside the input directory; one that points outside is reported ``Skipped`` with the
reason and never opened (no upload, no digest of the target). Directory symlinks are not
followed. Headers are read by the hardened reader the lake uses
(:func:`medlake.lake.dicom_headers.read_header`: truncation checks, SOP Instance UID), so the
PACS loop refuses exactly the files landing quarantines, before the header becomes a pydicom
Dataset for the gate and the SR.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from medlake.errors import DicomError


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
    """(sha256, md5) of a file; MD5 because Orthanc reports its stored copies by MD5."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def read_source_header(path: Path) -> Dataset:
    """The hardened header read (raises DicomError with a one-line reason), as a pydicom Dataset."""
    from medlake.lake.dicom_headers import read_header
    from medlake.pacs.inference import read_dataset

    try:
        read_header(path, file_size=path.stat().st_size)  # truncation and identity checks
    except DicomError as exc:
        raise DicomError(f"not a readable DICOM file: {exc}") from exc
    try:
        header = read_dataset(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on junk; all mean "not usable DICOM"
        raise DicomError(f"not a DICOM file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if not header.get(k)]
    if missing:
        raise DicomError(f"DICOM without {', '.join(missing)}")
    return header


def walk_input(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Every regular file under ``root`` in sorted order, with a reason when it must not be read.

    Directory symlinks are not descended; a file symlink whose target is outside ``root``
    (or dangling) comes with a reason and is never opened.
    """
    real_root = root.resolve()
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    yield path, "symlink pointing outside the input directory: not read"
                    continue
                if not target.is_file():
                    yield path, "symlink to a missing or non-regular file: not read"
                    continue
            elif not path.is_file():
                continue  # FIFOs, sockets, devices: never opened
            yield path, None


def _scan_one(path: Path, root: Path, refused: str | None) -> SourceFile:
    relative = path.relative_to(root).as_posix()
    if refused:
        return SourceFile(path, relative, None, None, None, reason=refused)
    try:
        sha, md5 = hash_file(path)
    except OSError as exc:
        return SourceFile(path, relative, None, None, None, reason=f"unreadable file: {exc.strerror or exc}")
    try:
        header = read_source_header(path)
    except DicomError as exc:
        return SourceFile(path, relative, sha, md5, None, reason=str(exc))
    except OSError as exc:
        return SourceFile(path, relative, sha, md5, None, reason=f"unreadable file: {exc.strerror or exc}")
    return SourceFile(path, relative, sha, md5, header)


def scan_inputs(input_dir: Path, *, workers: int = 4) -> list[SourceFile]:
    """Every file under ``input_dir`` (sorted), hashed and header-read, or refused with a reason."""
    entries = list(walk_input(input_dir))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda entry: _scan_one(entry[0], input_dir, entry[1]), entries))
