"""Every row and document a PACS run lands: predictions, uploads, gate decisions, model runs, results JSON.

One module, so the raw tables' columns and their vocabularies (:mod:`medlake.vocab`) are written in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medlake import __version__
from medlake.lake import pseudonyms
from medlake.pacs.gate import Decision, GateResult
from medlake.pacs.loop.state import RunState, utc_now
from medlake.pacs.orthanc.client import UploadOutcome
from medlake.vocab import ModelStatus, SrStatus, UploadKind, UploadStatus

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from medlake.pacs.loop.reporting import Reported
    from medlake.pacs.loop.sources import SourceFile


def _patient_id(header) -> str:
    return str(header.get("PatientID", "") or "")


def prediction_rows(state: RunState, item: Reported) -> list[dict]:
    """Image x pathology rows for a newly classified image (none for SRs rebuilt from the lake)."""
    if item.from_lake or item.prediction is None or not item.prediction.ok:
        return []
    candidate, identity = item.candidate, state.identity
    predicted_at = utc_now()
    return [
        {
            "run_id": state.run_id,
            "sop_instance_uid": candidate.sop_instance_uid,
            "study_instance_uid": candidate.uid("StudyInstanceUID"),
            "series_instance_uid": candidate.uid("SeriesInstanceUID"),
            "patient_id": _patient_id(candidate.header),
            "source_file": candidate.label,
            "file_name": candidate.file_name,
            "orthanc_instance_id": candidate.orthanc.instance_id,
            "pathology": finding.pathology,
            "score": float(finding.score),
            "threshold": float(finding.threshold),
            "is_positive": bool(finding.is_positive),
            "model_name": identity.name,
            "model_version": identity.version,
            "weights_sha256": identity.weights_sha256,
            "weights_trained": identity.weights_trained,
            "sr_sop_instance_uid": item.built.sop_instance_uid if item.built else None,
            "predicted_at": predicted_at,
            "sr_status": SrStatus.STORED if item.sr_stored else SrStatus.NOT_STORED,
            "gate_flags": candidate.gate.flags_text,
        }
        for finding in item.findings
    ]


def sr_upload_rows(state: RunState, item: Reported) -> list[dict]:
    if item.built is None:
        return []
    sr, outcome = item.built, item.sr_upload
    return [
        {
            "run_id": state.run_id,
            "kind": UploadKind.SR,
            "source_file": item.candidate.label,
            "file_name": item.candidate.file_name,
            "source_file_sha256": None,
            "sop_instance_uid": sr.sop_instance_uid,
            "study_instance_uid": sr.study_instance_uid,
            "series_instance_uid": sr.series_instance_uid,
            "patient_id": sr.patient_id,
            "orthanc_instance_id": outcome.orthanc_id if outcome else None,
            "orthanc_series_id": outcome.series_id if outcome else None,
            "orthanc_study_id": outcome.study_id if outcome else None,
            "orthanc_patient_id": outcome.patient_id if outcome else None,
            "status": outcome.status if outcome else UploadStatus.FAILED,
            "error": outcome.error if outcome else "not uploaded",
            "referenced_sop_instance_uid": sr.referenced_sop_instance_uid,
            "uploaded_at": utc_now(),
        }
    ]


def image_upload_row(state: RunState, source: SourceFile, outcome: UploadOutcome | None, uploaded_at) -> dict:
    return {
        "run_id": state.run_id,
        "kind": UploadKind.IMAGE,
        "source_file": source.relative,
        "file_name": source.file_name,
        "source_file_sha256": source.sha256,
        "sop_instance_uid": source.uid("SOPInstanceUID"),
        "study_instance_uid": source.uid("StudyInstanceUID"),
        "series_instance_uid": source.uid("SeriesInstanceUID"),
        "patient_id": None if source.header is None else _patient_id(source.header),
        "orthanc_instance_id": outcome.orthanc_id if outcome else None,
        "orthanc_series_id": outcome.series_id if outcome else None,
        "orthanc_study_id": outcome.study_id if outcome else None,
        "orthanc_patient_id": outcome.patient_id if outcome else None,
        "status": outcome.status if outcome else UploadStatus.SKIPPED,
        "error": outcome.error if outcome else source.reason,
        "referenced_sop_instance_uid": None,
        "uploaded_at": uploaded_at,
    }


def model_run_row(state: RunState) -> dict:
    """The run's row in ``raw/model_runs`` (a watch writes one per batch; the mart keeps the latest)."""
    import torch
    import torchxrayvision

    identity, counts = state.identity, state.counts()
    attempted = counts[f"model:{ModelStatus.CLASSIFIED}"] + counts[f"model:{ModelStatus.FAILED}"]
    timings = state.timings
    return {
        "run_id": state.run_id,
        "model_name": identity.name,
        "model_version": identity.version,
        "weights_file": str(state.choice.file) if state.choice.file else None,
        "weights_sha256": identity.weights_sha256,
        "weights_trained": identity.weights_trained,
        "device": str(state.classifier.device),
        "started_at": state.started_at,
        "finished_at": utc_now(),
        "images_total": attempted,
        "images_ok": counts[f"model:{ModelStatus.CLASSIFIED}"],
        "images_failed": counts[f"model:{ModelStatus.FAILED}"],
        "upload_s": timings.get("upload_s"),
        "inference_s": timings.get("inference_s"),
        "sr_build_s": timings.get("sr_build_s"),
        "sr_upload_s": timings.get("sr_upload_s"),
        "verify_s": timings.get("verify_s"),
        "total_s": timings.get("total_s", 0.0),
        "medlake_version": __version__,
        "torch_version": torch.__version__,
        "torchxrayvision_version": torchxrayvision.__version__,
        "run_kind": str(state.kind),
        "run_status": str(state.status),
        "stop_reason": state.stop_reason,
        "gate_policy": state.policy.to_json(),
        "images_skipped": counts[f"model:{ModelStatus.SKIPPED}"],
        "images_already_reported": counts[f"model:{ModelStatus.ALREADY_REPORTED}"],
        "srs_stored": counts["sr:Success"] + counts["sr:AlreadyStored"],
        "srs_not_stored": counts["sr:Failed"],
    }


def result_json(state: RunState, item: Reported, warning: str, pseudonym_key: bytes) -> dict:
    """Per-image results. Everything but the ``run`` block is deterministic for the same inputs."""
    candidate, sr, upload = item.candidate, item.built, item.sr_upload
    prediction = item.prediction
    return {
        "warning": warning,
        "source": {
            "file": candidate.label,
            "file_name": candidate.file_name,
            "sha256": candidate.sha256,
            "sop_instance_uid": candidate.sop_instance_uid,
            "sop_class_uid": candidate.uid("SOPClassUID"),
            "study_instance_uid": candidate.uid("StudyInstanceUID"),
            "series_instance_uid": candidate.uid("SeriesInstanceUID"),
            # The patient appears only as the lake's keyed pseudonym: neither PatientID nor Orthanc's
            # patient id (a plain SHA-1 of PatientID, reversible by trying every medical record number).
            "patient_pseudonym": pseudonyms.pseudonymise(pseudonym_key, _patient_id(candidate.header)),
            "modality": candidate.uid("Modality"),
        },
        "orthanc": {
            "instance_id": candidate.orthanc.instance_id,
            "series_id": candidate.orthanc.series_id,
            "study_id": candidate.orthanc.study_id,
        },
        "gate": {"decision": "accepted", "flags": list(candidate.gate.flags), "policy": state.policy.to_dict()},
        "model": state.identity.to_dict(),
        "threshold_rule": "is_positive = score >= threshold; op_norm-calibrated scores: 0.5 = operating point",
        "predictions": [finding.to_dict() for finding in item.findings],
        "sr": {
            "sop_instance_uid": sr.sop_instance_uid if sr else None,
            "series_instance_uid": sr.series_instance_uid if sr else None,
            "study_instance_uid": sr.study_instance_uid if sr else None,
            "sop_class": "Comprehensive 3D SR (TID 1500 Measurement Report)",
            "orthanc_instance_id": upload.orthanc_id if upload else None,
            "stored": bool(upload and upload.stored),
            "placement_verified": item.verified,
        },
        "warnings": list(prediction.warnings) if prediction else [],
        "run": {
            "run_id": state.run_id,
            "predicted_at": utc_now().isoformat(),
            "device": str(state.classifier.device),
            "timings_s": {
                "decode": round(prediction.decode_s, 4) if prediction else None,
                "forward_share": round(prediction.forward_s, 4) if prediction else None,
                "sr_build": round(item.build_s, 4),
            },
        },
    }


def gate_row(run_id: str, *, source: str, file_name: str | None, header, orthanc_id: str | None, gate, at) -> dict:
    """A ``pacs_gate_decisions`` row from a header (pydicom Dataset or Orthanc simplified tags)."""

    def text(keyword: str) -> str | None:
        value = header.get(keyword) if header is not None else None
        if value is None:
            return None
        value = getattr(value, "value", value) if not isinstance(value, str) else value
        text_value = "\\".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        return text_value.strip("\x00 ") or None

    frames = text("NumberOfFrames")
    return {
        "run_id": run_id,
        "source": source,
        "file_name": file_name,
        "sop_instance_uid": text("SOPInstanceUID"),
        "study_instance_uid": text("StudyInstanceUID"),
        "series_instance_uid": text("SeriesInstanceUID"),
        "sop_class_uid": text("SOPClassUID"),
        "orthanc_instance_id": orthanc_id,
        "modality": text("Modality"),
        "body_part_examined": text("BodyPartExamined"),
        "view_position": text("ViewPosition"),
        "photometric_interpretation": text("PhotometricInterpretation"),
        "number_of_frames": int(frames) if frames and frames.isdigit() else None,
        "decision": str(gate.decision),
        "reason_code": None if gate.reason is None else str(gate.reason),
        "reason_detail": gate.detail,
        "gate_flags": gate.flags_text,
        "decided_at": at,
    }


def skip_candidate_rows(
    state: RunState, sources: Sequence[tuple[str, str | None, Dataset | None, str | None, GateResult]]
):
    """Gate rows for instances skipped before the back half (label, file name, header, orthanc id, verdict)."""
    now = utc_now()
    return [
        gate_row(state.run_id, source=label, file_name=name, header=header, orthanc_id=orthanc_id, gate=verdict, at=now)
        for label, name, header, orthanc_id, verdict in sources
        if verdict.decision == Decision.SKIPPED
    ]
