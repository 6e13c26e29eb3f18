"""medlake's exceptions. The CLI turns each into a one-line message and an exit code."""

from __future__ import annotations


class MedlakeError(Exception):
    """Base class: an error a user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class LakeError(MedlakeError):
    """The lake directory is missing, unwritable or inconsistent."""


class LandingError(MedlakeError):
    """A delivery cannot be landed at all (missing input directory, unreadable tree)."""


class DbtError(MedlakeError):
    """dbt failed; its own output says why."""


class QueryError(MedlakeError):
    """An analyst query cannot run (no warehouse yet, bad arguments)."""


class OrthancError(MedlakeError):
    """The Orthanc server cannot be started, reached or used."""


class WeightsNotFoundError(MedlakeError):
    """The official model weights are not on disk; medlake never downloads them at run time."""

    exit_code = 2


class WeightsMismatchError(MedlakeError):
    """A weights file has the official name but not the official SHA-256."""

    exit_code = 2


class DicomError(MedlakeError):
    """A DICOM file cannot be read or built."""


class SynthError(MedlakeError):
    """A synthetic delivery cannot be written (bad arguments, output directory not ours)."""


class DatasetError(MedlakeError):
    """A training set cannot be exported or read (bad filter, unknown label, no warehouse, bad export dir)."""


class FileRefused(MedlakeError):
    """A delivery file medlake will not (or cannot) read; ``reason_code`` is its quarantine reason.

    Raised by :mod:`medlake.lake.files` for a file resolving outside the delivery root, a
    name that is not UTF-8, or an OS error; callers quarantine the entry, they never stop on it.
    """

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


class MissingExtraError(MedlakeError):
    """A command needs an optional part of medlake that is not installed (e.g. the PACS extra)."""

    exit_code = 3


class EngineError(MedlakeError):
    """The chosen transformation engine cannot run here (e.g. Spark without Java or its Python extras)."""

    exit_code = 2


class DiskSpaceError(LakeError):
    """The lake's filesystem has less free space than a land or build is about to write; nothing was written."""
