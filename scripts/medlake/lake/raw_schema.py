"""The raw layer's contract: one Arrow schema per raw table under ``LAKE/raw/<table>/``.

Every writer (landing, DICOM scan, PACS pipeline) writes exactly these columns, and the
dbt sources read them. Raw values keep their original meaning: a JSON field that arrived
as a string is stored as that string; any other JSON value (number, boolean, list,
object) is stored as its compact JSON text; an absent or null field is NULL. Casting is
staging's job, so nothing a delivery says is lost before it reaches the lake.

Lineage columns shared by the landed tables:
  landing_run_id       deterministic id of the landing batch (sha256 of its inputs)
  delivery_date        the delivery the file came in (partition key of the raw layer)
  ingested_at          when medlake landed it (UTC)
  source_file          path relative to the input directory, e.g. ``exam/abc.json``
  source_file_sha256   sha256 of the file's bytes
  record_position      0-based position of the record in its file
"""

from __future__ import annotations

import pyarrow as pa

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

_LINEAGE = [
    pa.field("landing_run_id", pa.string(), nullable=False),
    pa.field("delivery_date", pa.date32(), nullable=False),
    pa.field("ingested_at", UTC_TIMESTAMP, nullable=False),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("source_file_sha256", pa.string(), nullable=False),
]

EXAMS = pa.schema(
    _LINEAGE
    + [
        pa.field("record_position", pa.int32(), nullable=False),
        pa.field("id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("dataset_type", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("body_part", pa.string()),
        pa.field("image_path", pa.string()),
        # 'list' | 'null' | 'absent': what the record's `labels` field was.
        pa.field("labels_state", pa.string(), nullable=False),
        pa.field("label_entry_count", pa.int32(), nullable=False),
        pa.field("publication_timestamp", pa.string()),
        # JSON object of any top-level or `content` field medlake does not know (NULL when none),
        # so a new field in a delivery is kept rather than dropped.
        pa.field("extra_fields_json", pa.string()),
    ]
)

EXAM_LABELS = pa.schema(
    _LINEAGE
    + [
        pa.field("record_position", pa.int32(), nullable=False),
        pa.field("label_position", pa.int32(), nullable=False),
        pa.field("classification", pa.string()),
        pa.field("labelled_by", pa.string()),
        pa.field("labelled_date", pa.string()),
        pa.field("labelling_method", pa.string()),
        pa.field("classification_type", pa.string()),
        pa.field("value", pa.string()),
        pa.field("extra_fields_json", pa.string()),
    ]
)

MEDICAL_REPORTS = pa.schema(
    _LINEAGE
    + [
        pa.field("record_position", pa.int32(), nullable=False),
        pa.field("exam_id", pa.string()),
        pa.field("report_date", pa.string()),
        pa.field("reported_by", pa.string()),
        pa.field("text", pa.string()),
        pa.field("extra_fields_json", pa.string()),
    ]
)

QUARANTINE = pa.schema(
    _LINEAGE
    + [
        # 'exam' | 'medical_report' | 'exam_label' | 'image'
        pa.field("entity", pa.string(), nullable=False),
        # NULL when the whole file is rejected (e.g. invalid JSON).
        pa.field("record_position", pa.int32()),
        pa.field("label_position", pa.int32()),
        # machine-readable: invalid_json, not_utf8, unreadable_file, record_not_object,
        # missing_content, content_not_object, labels_not_list, label_not_object,
        # unreadable_dicom
        pa.field("reason_code", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw_excerpt", pa.string()),
    ]
)

LANDED_FILES = pa.schema(
    _LINEAGE
    + [
        # 'exam' | 'medical_report' | 'image'
        pa.field("entity", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("records_landed", pa.int32(), nullable=False),
        pa.field("records_quarantined", pa.int32(), nullable=False),
    ]
)

IMAGE_FILES = pa.schema(
    _LINEAGE
    + [
        pa.field("file_name", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("is_dicom", pa.bool_(), nullable=False),
    ]
)

DICOM_INSTANCES = pa.schema(
    _LINEAGE
    + [
        pa.field("file_name", pa.string(), nullable=False),
        pa.field("has_file_meta", pa.bool_(), nullable=False),
        pa.field("patient_id", pa.string()),
        pa.field("patient_sex", pa.string()),
        pa.field("patient_age", pa.string()),
        pa.field("study_instance_uid", pa.string()),
        pa.field("series_instance_uid", pa.string()),
        pa.field("sop_instance_uid", pa.string()),
        pa.field("sop_class_uid", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("body_part_examined", pa.string()),
        pa.field("view_position", pa.string()),
        pa.field("study_date", pa.string()),
        pa.field("study_description", pa.string()),
        pa.field("series_number", pa.string()),
        pa.field("instance_number", pa.string()),
        pa.field("manufacturer", pa.string()),
        pa.field("rows", pa.int32()),
        pa.field("columns", pa.int32()),
        pa.field("bits_allocated", pa.int32()),
        pa.field("bits_stored", pa.int32()),
        pa.field("photometric_interpretation", pa.string()),
        pa.field("transfer_syntax_uid", pa.string()),
    ]
)

# --- PACS + AI loop (written by `medlake pacs run`) ---------------------------------

PACS_UPLOADS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        # 'image' | 'sr'
        pa.field("kind", pa.string(), nullable=False),
        pa.field("source_file", pa.string()),
        pa.field("file_name", pa.string()),
        pa.field("source_file_sha256", pa.string()),
        pa.field("sop_instance_uid", pa.string()),
        pa.field("study_instance_uid", pa.string()),
        pa.field("series_instance_uid", pa.string()),
        pa.field("patient_id", pa.string()),
        pa.field("orthanc_instance_id", pa.string()),
        pa.field("orthanc_series_id", pa.string()),
        pa.field("orthanc_study_id", pa.string()),
        pa.field("orthanc_patient_id", pa.string()),
        # 'Success' | 'AlreadyStored' | 'Failed' | 'Skipped'
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        # For kind='sr': the image SOP Instance UID this SR reports on.
        pa.field("referenced_sop_instance_uid", pa.string()),
        pa.field("uploaded_at", UTC_TIMESTAMP, nullable=False),
    ]
)

PREDICTIONS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("sop_instance_uid", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string()),
        pa.field("series_instance_uid", pa.string()),
        pa.field("patient_id", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("file_name", pa.string(), nullable=False),
        pa.field("orthanc_instance_id", pa.string()),
        pa.field("pathology", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("is_positive", pa.bool_(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("weights_sha256", pa.string(), nullable=False),
        pa.field("weights_trained", pa.bool_(), nullable=False),
        pa.field("sr_sop_instance_uid", pa.string()),
        pa.field("predicted_at", UTC_TIMESTAMP, nullable=False),
        # 'stored' | 'not_stored': whether the SR carrying this prediction was in Orthanc when it landed
        # (a later run that stores it adds a kind='sr' row to pacs_uploads; the mart joins it).
        pa.field("sr_status", pa.string()),
        # Gate flags of the image (';'-joined GateFlag values), e.g. 'body_part_absent;view_absent'.
        pa.field("gate_flags", pa.string()),
    ]
)

MODEL_RUNS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("weights_file", pa.string()),
        pa.field("weights_sha256", pa.string(), nullable=False),
        pa.field("weights_trained", pa.bool_(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("started_at", UTC_TIMESTAMP, nullable=False),
        pa.field("finished_at", UTC_TIMESTAMP, nullable=False),
        pa.field("images_total", pa.int32(), nullable=False),
        pa.field("images_ok", pa.int32(), nullable=False),
        pa.field("images_failed", pa.int32(), nullable=False),
        pa.field("upload_s", pa.float64()),
        pa.field("inference_s", pa.float64()),
        pa.field("sr_build_s", pa.float64()),
        pa.field("sr_upload_s", pa.float64()),
        pa.field("verify_s", pa.float64()),
        pa.field("total_s", pa.float64(), nullable=False),
        pa.field("medlake_version", pa.string(), nullable=False),
        pa.field("torch_version", pa.string()),
        pa.field("torchxrayvision_version", pa.string()),
        # 'run' (pacs run over a folder) | 'watch' (pacs watch over Orthanc's changes feed)
        pa.field("run_kind", pa.string()),
        # 'running' (a watch's progress row) | 'finished' | 'stopped' (SIGTERM/Ctrl-C) | 'orthanc_unreachable'
        pa.field("run_status", pa.string()),
        pa.field("stop_reason", pa.string()),
        # The intended-use gate as configured for this run (JSON: allowed views, absent body part/view).
        pa.field("gate_policy", pa.string()),
        pa.field("images_skipped", pa.int32()),
        pa.field("images_already_reported", pa.int32()),
        pa.field("srs_stored", pa.int32()),
        pa.field("srs_not_stored", pa.int32()),
    ]
)

# One row per instance a run looked at: accepted by the intended-use gate (with flags) or skipped
# with a reason code (SkipReason). Written by `pacs run` and `pacs watch`; no patient identifiers.
PACS_GATE_DECISIONS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        # where the instance came from: a path relative to `pacs run --input`, or 'orthanc:<instance id>'
        pa.field("source", pa.string(), nullable=False),
        pa.field("file_name", pa.string()),
        pa.field("sop_instance_uid", pa.string()),
        pa.field("study_instance_uid", pa.string()),
        pa.field("series_instance_uid", pa.string()),
        pa.field("sop_class_uid", pa.string()),
        pa.field("orthanc_instance_id", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("body_part_examined", pa.string()),
        pa.field("view_position", pa.string()),
        pa.field("photometric_interpretation", pa.string()),
        pa.field("number_of_frames", pa.int32()),
        # 'accepted' | 'skipped'
        pa.field("decision", pa.string(), nullable=False),
        pa.field("reason_code", pa.string()),
        pa.field("reason_detail", pa.string()),
        pa.field("gate_flags", pa.string()),
        pa.field("decided_at", UTC_TIMESTAMP, nullable=False),
    ]
)

RAW_TABLES: dict[str, pa.Schema] = {
    "exams": EXAMS,
    "exam_labels": EXAM_LABELS,
    "medical_reports": MEDICAL_REPORTS,
    "quarantine": QUARANTINE,
    "landed_files": LANDED_FILES,
    "image_files": IMAGE_FILES,
    "dicom_instances": DICOM_INSTANCES,
    "pacs_uploads": PACS_UPLOADS,
    "predictions": PREDICTIONS,
    "model_runs": MODEL_RUNS,
    "pacs_gate_decisions": PACS_GATE_DECISIONS,
}
