"""Putting an export's images and reports on disk, from the lake's object store or the PACS.

De-identified (the default): a DICOM is rewritten by :mod:`medlake.dataset.deid`, in worker
processes when there are many; a PNG/JPEG/GIF/TIFF is re-encoded from its pixels with no
metadata (:mod:`medlake.dataset.raster`); a PDF or any other document cannot be cleaned
automatically and is left out (status ``left_out_document``) unless the user opts in with
``--include-documents``, which dataset.json records. Under ``--no-deidentify`` (or for an opted-in
document) a file is a hard link to its object when the export is on the lake's file system (no
bytes copied), else a copy. An image whose object is not in the store (a lake landed before the store
existed) is fetched from Orthanc when the PACS holds it. Every image ends with a status in the
manifest: nothing is dropped silently.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from medlake.dataset.deid.keys import Keys, Subject
from medlake.dataset.raster import RASTER_FORMATS, UnreadableImageError, reencode
from medlake.errors import MedlakeError
from medlake.lake.files import HEAD_BYTES
from medlake.lake.image_files import claims_dicom, looks_like_bare_dicom
from medlake.lake.objects import link_or_copy

# Below this many DICOMs to rewrite, starting worker processes costs more than it saves.
MIN_FILES_FOR_WORKERS = 64


class ImageStatus(StrEnum):
    EXPORTED = "exported"
    NO_IMAGE = "no_image"  # the exam names no image file the lake or the PACS holds
    MISSING_OBJECT = "missing_object"  # dim_images says landed, but the object is not in the store
    PACS_FAILED = "pacs_failed"  # only in the PACS, and Orthanc could not return it
    UNREADABLE_DICOM = "unreadable_dicom"  # could not be read or written for de-identification
    BURNED_IN_ANNOTATION = "burned_in_annotation"  # pixels may show identifiers: not exported de-identified
    UNREADABLE_IMAGE = "unreadable_image"  # a PNG/JPEG/... whose pixels cannot be decoded to re-encode them
    LEFT_OUT_DOCUMENT = "left_out_document"  # a PDF or other document: cannot be cleaned, not exported
    AMBIGUOUS = "ambiguous"  # the exam's image reference matches no single image by evidence: none exported


@dataclass(frozen=True)
class ImageTask:
    """One image to export: where it goes in the export, where its bytes are."""

    row: int
    destination: str  # relative to the export directory
    object_path: str | None  # absolute path of the object in the store
    orthanc_instance_id: str | None
    is_dicom: bool
    media_type: str | None = None
    subject: Subject | None = None  # whose file it is (pseudonym, date offset); None under --no-deidentify


@dataclass(frozen=True)
class ImageOutcome:
    row: int
    status: ImageStatus
    method: str | None = None  # linked | copied | deidentified
    detail: str | None = None


_WORKER_DEIDENTIFIER = None


def _init_worker(pseudonym_key: bytes) -> None:
    global _WORKER_DEIDENTIFIER
    from medlake.dataset.deid import Deidentifier

    _WORKER_DEIDENTIFIER = Deidentifier(Keys(pseudonym_key))


def _deidentify_one(task: ImageTask, out: str, source: str) -> ImageOutcome:
    from medlake.dataset.deid import BurnedInAnnotationError, DeidentificationError

    try:
        _WORKER_DEIDENTIFIER.deidentify_file(  # type: ignore[union-attr]
            Path(source), Path(out, task.destination), task.subject
        )
    except BurnedInAnnotationError as exc:
        return ImageOutcome(task.row, ImageStatus.BURNED_IN_ANNOTATION, detail=str(exc))
    except DeidentificationError as exc:
        return ImageOutcome(task.row, ImageStatus.UNREADABLE_DICOM, detail=str(exc))
    return ImageOutcome(task.row, ImageStatus.EXPORTED, method="deidentified")


def _deidentify_task(item: tuple[ImageTask, str, str]) -> ImageOutcome:
    return _deidentify_one(*item)


class ImageExporter:
    """Exports a list of :class:`ImageTask` into ``out``, with a progress bar."""

    def __init__(
        self,
        out: Path,
        *,
        pseudonym_key: bytes | None,
        include_documents: bool = False,
        workers: int | None = None,
        progress: bool = True,
    ) -> None:
        self.out = Path(out)
        self.pseudonym_key = pseudonym_key  # None: --no-deidentify, files go out as stored
        self.include_documents = include_documents
        self.workers = workers or os.cpu_count() or 1
        self.progress = progress
        self._pacs = None
        self._fetched_dir: Path | None = None

    def run(self, tasks: Sequence[ImageTask]) -> list[ImageOutcome]:
        from tqdm import tqdm

        outcomes: list[ImageOutcome] = []
        rewrite: list[tuple[ImageTask, str, str]] = []
        with tqdm(total=len(tasks), unit="image", desc="export", disable=not self.progress, mininterval=0.5) as bar:
            for task in tasks:
                source, failure = self._source_of(task)
                if failure is not None:
                    outcomes.append(failure)
                    bar.update(1)
                elif self.pseudonym_key is not None and (task.is_dicom or _looks_like_dicom(source)):
                    rewrite.append((task, str(self.out), str(source)))
                elif self.pseudonym_key is not None and task.media_type in RASTER_FORMATS:
                    outcomes.append(self._reencode(task, source))
                    bar.update(1)
                elif self.pseudonym_key is not None and not self.include_documents:
                    detail = f"{task.media_type or 'unknown type'}: a document cannot be de-identified automatically"
                    outcomes.append(ImageOutcome(task.row, ImageStatus.LEFT_OUT_DOCUMENT, detail=detail))
                    bar.update(1)
                else:
                    method = link_or_copy(Path(source), self.out / task.destination)
                    outcomes.append(ImageOutcome(task.row, ImageStatus.EXPORTED, method=str(method)))
                    bar.update(1)
            for outcome in self._deidentify_all(rewrite):
                outcomes.append(outcome)
                bar.update(1)
        self._close()
        return sorted(outcomes, key=lambda outcome: outcome.row)

    def _reencode(self, task: ImageTask, source: Path) -> ImageOutcome:
        try:
            reencode(Path(source), self.out / task.destination, task.media_type)  # type: ignore[arg-type]
        except UnreadableImageError as exc:
            return ImageOutcome(task.row, ImageStatus.UNREADABLE_IMAGE, detail=str(exc))
        return ImageOutcome(task.row, ImageStatus.EXPORTED, method="reencoded")

    def _deidentify_all(self, items: list[tuple[ImageTask, str, str]]) -> Iterator[ImageOutcome]:
        if not items:
            return
        if len(items) < MIN_FILES_FOR_WORKERS or self.workers <= 1:
            _init_worker(self.pseudonym_key)  # type: ignore[arg-type]
            yield from map(_deidentify_task, items)
            return
        with ProcessPoolExecutor(
            max_workers=self.workers, initializer=_init_worker, initargs=(self.pseudonym_key,)
        ) as pool:
            yield from pool.map(_deidentify_task, items, chunksize=16)

    def _source_of(self, task: ImageTask) -> tuple[Path | None, ImageOutcome | None]:
        """Where the image's bytes are: the object store, else a copy fetched from Orthanc."""
        if task.object_path and os.path.isfile(task.object_path):
            return Path(task.object_path), None
        if task.orthanc_instance_id:
            try:
                return self._fetch(task.orthanc_instance_id), None
            except MedlakeError as exc:
                return None, ImageOutcome(task.row, ImageStatus.PACS_FAILED, detail=str(exc))
        if task.object_path:
            detail = f"{task.object_path} is not in the object store (landed before it existed? re-land the files)"
            return None, ImageOutcome(task.row, ImageStatus.MISSING_OBJECT, detail=detail)
        return None, ImageOutcome(task.row, ImageStatus.NO_IMAGE)

    def _fetch(self, instance_id: str) -> Path:
        from medlake.extras import require_pacs

        require_pacs("fetching an image from Orthanc")  # a lake-only install reports it per image
        from medlake.pacs.orthanc.client import OrthancClient

        if self._pacs is None:
            self._pacs = OrthancClient()
            self._fetched_dir = Path(tempfile.mkdtemp(prefix=".pacs-", dir=self.out))
        data = self._pacs.download(instance_id)
        path = self._fetched_dir / instance_id  # type: ignore[operator]
        path.write_bytes(data)
        return path

    def _close(self) -> None:
        if self._pacs is not None:
            self._pacs.close()
            for path in self._fetched_dir.iterdir():  # type: ignore[union-attr]
                path.unlink()
            self._fetched_dir.rmdir()  # type: ignore[union-attr]


def _looks_like_dicom(path: Path) -> bool:
    """Decided on the bytes, not on the index: a DICOM must never leave un-de-identified because the
    lake did not know it was one (an image fetched from the PACS, a file landed without a header)."""
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    return claims_dicom(path.name, head) or looks_like_bare_dicom(head)


def write_reports(out: Path, paths: Sequence[str | None], texts: Sequence[str | None]) -> int:
    """Write each report's text to its path under ``out``; returns how many were written."""
    written = 0
    made: set[str] = set()
    for path, text in zip(paths, texts, strict=True):
        if path is None or text is None:
            continue
        target = os.path.join(out, path)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (text if text.endswith("\n") else text + "\n").encode("utf-8"))
        finally:
            os.close(fd)
        written += 1
    return written


def method_counts(outcomes: Sequence[ImageOutcome]) -> dict[str, int]:
    return dict(Counter(outcome.method for outcome in outcomes if outcome.method))
