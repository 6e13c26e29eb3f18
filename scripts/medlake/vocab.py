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
    NOT_CLASSIFIED = "not classified"  # not DICOM, not stored in Orthanc, a duplicate, or the run stopped
    SKIPPED = "skipped"  # the intended-use gate said no
    ALREADY_REPORTED = "already reported"  # our SR is in Orthanc and its predictions in the lake
    SR_FROM_LAKE = "reported from lake"  # predictions landed before, the SR was missing: stored now


class SkipReason(StrEnum):
    """Why a PACS run did not classify an instance (``pacs_gate_decisions.reason_code``)."""

    # the intended-use gate's rules (medlake.pacs.gate.RULES)
    NON_IMAGE = "non_image"
    MODALITY = "modality"
    FOR_PROCESSING = "for_processing"
    MULTI_FRAME = "multi_frame"
    NOT_GRAYSCALE = "not_grayscale"
    NON_HUMAN = "non_human"
    AGE = "age"
    BODY_PART = "body_part"
    BODY_PART_MISSING = "body_part_missing"
    VIEW = "view"
    VIEW_MISSING = "view_missing"
    # the loop's own decisions, landed the same way
    ALREADY_REPORTED = "already_reported"  # our SR for this model identity is in Orthanc, predictions in the lake
    DUPLICATE = "duplicate"  # the same instance twice in one run (same UID, same bytes)
    NOT_IN_PACS = "not_in_pacs"  # Orthanc holds other bytes under this SOP Instance UID
    UNREADABLE = "unreadable"  # pulled from Orthanc but not a readable DICOM instance


class GateFlag(StrEnum):
    """Accepted by the intended-use gate, with something a reviewer should know."""

    BODY_PART_ABSENT = "body_part_absent"
    VIEW_ABSENT = "view_absent"
    LATERAL_ALLOWED = "lateral_allowed"
    AGE_ABSENT = "age_absent"


class GateDecision(StrEnum):
    ACCEPTED = "accepted"
    SKIPPED = "skipped"


class RunKind(StrEnum):
    """Which command made a PACS run (``model_runs.run_kind``)."""

    RUN = "run"
    WATCH = "watch"


class RunStatus(StrEnum):
    """How a PACS run ended (``model_runs.run_status``); a watch writes ``running`` rows as it goes."""

    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    ORTHANC_UNREACHABLE = "orthanc_unreachable"


class SrStatus(StrEnum):
    """Whether the SR carrying a prediction was in Orthanc when the prediction landed."""

    STORED = "stored"
    NOT_STORED = "not_stored"


class Engine(StrEnum):
    """The engine a lake's dbt project is built on (``medlake build --engine``; medlake.warehouse.engines)."""

    DUCKDB = "duckdb"
    SPARK = "spark"
