"""medlake's fixed vocabularies, in one place.

Each is a :class:`~enum.StrEnum`: a member *is* its string value, so it can be written to
Parquet, compared with a plain string and printed as-is. The values are what the lake
stores and what dbt's ``accepted_values`` tests check (keep them in step: a new member
here is a new accepted value there).
"""

from __future__ import annotations

from enum import StrEnum


class Entity(StrEnum):
    """What a raw row or a delivery file is (``quarantine.entity``, ``landed_files.entity``)."""

    EXAM = "exam"
    MEDICAL_REPORT = "medical_report"
    EXAM_LABEL = "exam_label"  # quarantine only: one label element of an exam
    IMAGE = "image"


class QuarantineReason(StrEnum):
    """``quarantine.reason_code``: why a file, record or label did not land."""

    # the file as a whole
    INVALID_JSON = "invalid_json"
    NOT_UTF8 = "not_utf8"
    UNREADABLE_FILE = "unreadable_file"
    OUTSIDE_DELIVERY_ROOT = "outside_delivery_root"  # a symlink resolving outside the delivery: never read
    FILE_NAME_NOT_UTF8 = "file_name_not_utf8"  # the name cannot be recorded as lineage: never read
    UNREADABLE_DICOM = "unreadable_dicom"
    # one record (or one label) of a file
    RECORD_NOT_OBJECT = "record_not_object"
    MISSING_CONTENT = "missing_content"
    CONTENT_NOT_OBJECT = "content_not_object"
    LABELS_NOT_LIST = "labels_not_list"
    LABEL_NOT_OBJECT = "label_not_object"
    TOO_DEEPLY_NESTED = "too_deeply_nested"


class LabelsState(StrEnum):
    """``exams.labels_state``: what the record's ``labels`` field was."""

    LIST = "list"
    NULL = "null"
    ABSENT = "absent"


class FileLayout(StrEnum):
    """How a delivery file holds its records (json_records.ParsedFile.layout)."""

    ARRAY = "array"
    OBJECT = "object"
    SCALAR = "scalar"
    JSON_LINES = "json_lines"
    EMPTY = "empty"
    REJECTED = "rejected"


class MediaType(StrEnum):
    """``image_files.media_type``: sniffed from the bytes, never from the name."""

    DICOM = "application/dicom"
    PDF = "application/pdf"
    PNG = "image/png"
    JPEG = "image/jpeg"
    GIF = "image/gif"
    TIFF = "image/tiff"
    OCTET_STREAM = "application/octet-stream"


class UploadStatus(StrEnum):
    """``pacs_uploads.status``: Orthanc's own words for a store, plus medlake's Skipped."""

    SUCCESS = "Success"
    ALREADY_STORED = "AlreadyStored"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class UploadKind(StrEnum):
    """``pacs_uploads.kind``."""

    IMAGE = "image"
    SR = "sr"


class ModelStatus(StrEnum):
    """Per image of a PACS run: did the model classify it."""

    CLASSIFIED = "classified"
    FAILED = "failed"
    NOT_CLASSIFIED = "not classified"


class Engine(StrEnum):
    """The engine a lake's dbt project is built on (``medlake build --engine``; medlake.warehouse.engines)."""

    DUCKDB = "duckdb"
    SPARK = "spark"
