"""``medlake pacs run``: DICOMs -> Orthanc -> TorchXRayVision -> DICOM SR -> Orthanc -> the lake.

Stages, each timed:

0. fail fast: the weights (official digest, or --allow-untrained-weights), Orthanc reachable
   with the configured credentials, the lake writable; then the model is loaded;
1. scan: every file under INPUT (recursive) is hashed and its DICOM header read; anything
   that is not DICOM is reported ``Skipped`` with the reason, never fatal;
2. upload every DICOM (``POST /instances``, concurrent, retried); ``AlreadyStored`` is fine;
3. decide what to classify: one file per SOP Instance UID, and only a file whose bytes are
   the ones Orthanc holds (MD5 of Orthanc's stored copy); a different file reusing a stored
   UID is reported, not classified, because its SR would describe pixels the PACS lacks;
4. classify (batched, decoding overlapped with the forward pass);
5. build one TID 1500 SR per image (deterministic UIDs: a re-run stores nothing new) and
   upload it; 6. verify from Orthanc that each SR sits under its source's patient and study
   in a series of its own;
7. write ``results/<SOPInstanceUID>.json`` per image and the raw Parquet tables
   ``pacs_uploads`` (every upload outcome, images and SRs), ``predictions`` (image x
   pathology) and ``model_runs`` (one row per run; a re-run is a new run).

Every output made with untrained weights says so (JSON ``warning``, ``weights_trained=false``,
the SR's algorithm name and series description).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from pydicom.dataset import Dataset

from medlake import __version__
from medlake.errors import DicomError, LakeError
from medlake.lake import layout as lake_io
from medlake.lake import pseudonyms
from medlake.lake.raw_schema import RAW_TABLES
from medlake.pacs import sr_builder, weights
from medlake.pacs.instance_identity import StoredCopies
from medlake.pacs.orthanc_client import (
    ALREADY_STORED,
    FAILED,
    SKIPPED,
    SUCCESS,
    OrthancClient,
    OrthancSettings,
    UploadOutcome,
)
from medlake.pacs.sr_numbering import SrInstanceNumbers
from medlake.pacs.weights import ModelIdentity

UNTRAINED_WARNING = (
    "UNTRAINED: these scores come from a randomly initialised DenseNet-121 (torch.manual_seed(0)), not the official "
    "TorchXRayVision weights. Pipeline output for demos and tests only - not a diagnosis, not for clinical use."
)
TRAINED_WARNING = (
    "Research model output (TorchXRayVision densenet121-res224-all): not a diagnosis, not for clinical use."
)

# What happened to an image on the model side.
CLASSIFIED = "classified"
CLASSIFY_FAILED = "failed"
NOT_CLASSIFIED = "not classified"


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

    @property
    def is_image(self) -> bool:
        return self.header is not None and "Rows" in self.header and "Columns" in self.header


@dataclass(frozen=True)
class FileOutcome:
    """The per-file table row: upload, model and SR outcome of one input file."""

    file: str
    upload_status: str
    orthanc_id: str | None
    sop_instance_uid: str | None
    model_status: str
    sr_status: str | None = None
    sr_sop_instance_uid: str | None = None
    placement_verified: bool | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "upload_status": self.upload_status,
            "orthanc_id": self.orthanc_id,
            "sop_instance_uid": self.sop_instance_uid,
            "model_status": self.model_status,
            "sr_status": self.sr_status,
            "sr_sop_instance_uid": self.sr_sop_instance_uid,
            "placement_verified": self.placement_verified,
            "note": self.note,
        }


@dataclass(frozen=True)
class PacsRunSummary:
    run_id: str
    input_dir: str
    orthanc_url: str
    results_dir: str
    model: dict
    weights_reason: str
    files: tuple[FileOutcome, ...]
    timings_s: dict[str, float]
    results_written: int
    lake_parts: tuple[str, ...] = field(default=())

    def _count(self, attribute: str, value: str) -> int:
        return sum(1 for row in self.files if getattr(row, attribute) == value)

    @property
    def images_classified(self) -> int:
        return self._count("model_status", CLASSIFIED)

    @property
    def images_failed(self) -> int:
        return self._count("model_status", CLASSIFY_FAILED)

    @property
    def ok(self) -> bool:
        """No DICOM upload failed, no image failed the model, every SR stored and verified."""
        upload_failed = self._count("upload_status", FAILED)
        sr_bad = sum(
            1
            for row in self.files
            if row.model_status == CLASSIFIED
            and (row.sr_status not in (SUCCESS, ALREADY_STORED) or not row.placement_verified)
        )
        return upload_failed == 0 and self.images_failed == 0 and sr_bad == 0

    @property
    def images_per_s(self) -> float:
        total = self.timings_s.get("total_s") or 0.0
        return self.images_classified / total if total else 0.0

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "ok": self.ok,
            "input_dir": self.input_dir,
            "orthanc_url": self.orthanc_url,
            "results_dir": self.results_dir,
            "model": self.model,
            "weights_reason": self.weights_reason,
            "counts": {
                "files": len(self.files),
                "uploaded_success": self._count("upload_status", SUCCESS),
                "uploaded_already_stored": self._count("upload_status", ALREADY_STORED),
                "upload_failed": self._count("upload_status", FAILED),
                "skipped": self._count("upload_status", SKIPPED),
                "classified": self.images_classified,
                "classify_failed": self.images_failed,
                "not_classified": self._count("model_status", NOT_CLASSIFIED),
                "sr_success": self._count("sr_status", SUCCESS),
                "sr_already_stored": self._count("sr_status", ALREADY_STORED),
                "sr_failed": self._count("sr_status", FAILED),
                "sr_verified": sum(1 for row in self.files if row.placement_verified),
            },
            "timings_s": self.timings_s,
            "images_per_s_end_to_end": round(self.images_per_s, 3),
            "results_written": self.results_written,
            "lake_parts": list(self.lake_parts),
            "files": [row.to_dict() for row in self.files],
        }

    def render(self) -> str:
        counts = self.to_dict()["counts"]
        lines = [f"medlake pacs run {self.run_id}  ({'OK' if self.ok else 'WITH FAILURES'})"]
        if not self.model.get("weights_trained"):
            lines.append("!! UNTRAINED WEIGHTS: every score below is from a random-init model, not a diagnosis !!")
        lines.append(f"model    {self.model.get('name')}  sha256 {str(self.model.get('weights_sha256'))[:16]}...")
        lines.append(f"orthanc  {self.orthanc_url}   input {self.input_dir}")
        lines.append("")
        header = ("file", "upload", "orthanc id", "SOP Instance UID", "model", "SR", "placed")
        rows = [
            (
                row.file,
                row.upload_status,
                row.orthanc_id or "-",
                row.sop_instance_uid or "-",
                row.model_status,
                row.sr_status or "-",
                {True: "yes", False: "NO", None: "-"}[row.placement_verified],
            )
            for row in self.files
        ]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        widths[0] = min(widths[0], 60)

        def fmt(values: Sequence[str]) -> str:
            cells = []
            for i, value in enumerate(values):
                text = str(value)
                if len(text) > widths[i]:
                    text = "..." + text[-(widths[i] - 3) :]
                cells.append(text.ljust(widths[i]))
            return "  ".join(cells).rstrip()

        lines.append(fmt(header))
        lines.append(fmt(["-" * w for w in widths]))
        lines.extend(fmt(r) for r in rows)
        notes = [(row.file, row.note) for row in self.files if row.note]
        if notes:
            lines.append("")
            lines.append("notes:")
            lines.extend(f"  {file}: {note}" for file, note in notes)
        lines.append("")
        lines.append(
            f"files {counts['files']}: uploaded {counts['uploaded_success']} new + {counts['uploaded_already_stored']} "
            f"already stored, {counts['upload_failed']} failed, {counts['skipped']} skipped (not DICOM)"
        )
        lines.append(
            f"model: {counts['classified']} classified, {counts['classify_failed']} failed, "
            f"{counts['not_classified']} not classified"
        )
        lines.append(
            f"SRs: {counts['sr_success']} stored + {counts['sr_already_stored']} already stored, "
            f"{counts['sr_failed']} failed; {counts['sr_verified']} verified under their source's patient/study"
        )
        stage = "  ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in self.timings_s.items())
        lines.append(f"timings: {stage}")
        lines.append(
            f"end to end: {self.images_per_s:.2f} images/s; results JSON: {self.results_written} in {self.results_dir}"
        )
        return "\n".join(lines)


# --- helpers ---------------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_run_id(started: dt.datetime) -> str:
    return f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _hash_file(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _scan_one(path: Path, root: Path) -> SourceFile:
    from medlake.pacs.inference import read_dataset

    relative = path.relative_to(root).as_posix()
    try:
        sha, md5 = _hash_file(path)
    except OSError as exc:
        return SourceFile(path, relative, None, None, None, reason=f"unreadable file: {exc.strerror or exc}")
    try:
        header = read_dataset(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on junk; all mean "not usable DICOM"
        return SourceFile(path, relative, sha, md5, None, reason=f"not a DICOM file ({type(exc).__name__}: {exc})")
    missing = [k for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if not header.get(k)]
    if missing:
        return SourceFile(path, relative, sha, md5, None, reason=f"DICOM without {', '.join(missing)}")
    return SourceFile(path, relative, sha, md5, header)


def scan_inputs(input_dir: Path, *, workers: int = 4) -> list[SourceFile]:
    """Every regular file under ``input_dir`` (sorted), hashed and header-read."""
    paths = sorted(p for p in input_dir.rglob("*") if p.is_file())
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda p: _scan_one(p, input_dir), paths))


def _choose_for_model(
    sources: Sequence[SourceFile], uploads: dict[str, UploadOutcome], client: OrthancClient
) -> tuple[list[SourceFile], dict[str, str]]:
    """Which stored images to classify, and why the others are not (relative path -> note)."""
    notes: dict[str, str] = {}
    chosen: list[SourceFile] = []
    first_by_uid: dict[str, str] = {}
    stored_copies = StoredCopies(client)
    for source in sources:
        outcome = uploads.get(source.relative)
        if outcome is None or not outcome.stored:
            continue
        if not source.is_image:
            notes[source.relative] = f"not an image (SOP Class {source.uid('SOPClassUID')}): stored, not classified"
            continue
        sop_uid = str(source.uid("SOPInstanceUID"))
        # Orthanc keeps the first file it received for a SOP Instance UID: only classify that instance
        # (same dataset; the file meta may differ, e.g. when Orthanc received it over DICOM).
        if outcome.status == ALREADY_STORED and not stored_copies.holds(
            str(outcome.orthanc_id), source.path, str(source.md5)
        ):
            notes[source.relative] = (
                "Orthanc already holds a different file with this SOP Instance UID (first stored wins); "
                "not classified, as its SR would describe pixels the PACS does not have"
            )
            continue
        if sop_uid in first_by_uid:
            notes[source.relative] = f"same file as {first_by_uid[sop_uid]} (same SOP Instance UID and bytes)"
            continue
        first_by_uid[sop_uid] = source.relative
        chosen.append(source)
    return chosen, notes


def _write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# --- the run ---------------------------------------------------------------------------


def run(
    input_dir: Path,
    lake: Path,
    *,
    weights_dir: Path | None = None,
    allow_untrained: bool = False,
    workers: int = 4,
    batch_size: int = 8,
    results_dir: Path = Path("results"),
    progress: bool = True,
) -> PacsRunSummary:
    """The whole loop; see the module docstring. Raises MedlakeError subclasses for fatal problems."""
    from tqdm import tqdm

    from medlake.pacs import inference

    started_at = _utc_now()
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    input_dir = Path(input_dir)
    lake = Path(lake)
    results_dir = Path(results_dir)
    if not input_dir.is_dir():
        raise DicomError(f"input directory not found: {input_dir}")

    # 0. fail fast, before anything is uploaded. (startup includes importing torch + torchxrayvision.)
    choice = weights.resolve(weights_dir, allow_untrained=allow_untrained)
    client = OrthancClient(OrthancSettings.from_env(), max_connections=max(4, workers))
    try:
        client.system()
        lake_io.init_lake(lake)
        timings["startup_s"] = time.perf_counter() - clock
        mark = time.perf_counter()
        classifier = inference.Classifier(choice)
        timings["model_load_s"] = time.perf_counter() - mark
        identity = classifier.identity
        run_id = _new_run_id(started_at)

        # 1. scan
        mark = time.perf_counter()
        sources = scan_inputs(input_dir, workers=workers)
        timings["scan_s"] = time.perf_counter() - mark

        # 2. upload images
        mark = time.perf_counter()
        dicoms = [s for s in sources if s.header is not None]
        outcomes = client.upload_many(
            [(s.relative, s.path.read_bytes) for s in dicoms], workers=workers, progress=progress, desc="upload"
        )
        uploads = {o.label: o for o in outcomes}
        timings["upload_s"] = time.perf_counter() - mark
        uploaded_at = _utc_now()

        # 3 + 4. choose and classify
        mark = time.perf_counter()
        chosen, notes = _choose_for_model(sources, uploads, client)
        predictions = classifier.classify_paths([s.path for s in chosen], batch_size=batch_size, progress=progress)
        timings["inference_s"] = time.perf_counter() - mark
        predicted_at = _utc_now()

        # 5. SRs
        mark = time.perf_counter()
        findings_by_file: dict[str, list[sr_builder.Finding]] = {}
        built: dict[str, sr_builder.BuiltSr] = {}
        sr_build_s: dict[str, float] = {}
        sr_numbers = SrInstanceNumbers.from_orthanc(client)  # counts within each SR series, after what Orthanc holds
        errors: dict[str, str] = {}
        for source, prediction in tqdm(
            list(zip(chosen, predictions, strict=True)), desc="build SR", unit="SR", disable=not progress
        ):
            if not prediction.ok:
                errors[source.relative] = str(prediction.error)
                continue
            findings = [
                sr_builder.Finding(
                    pathology=name,
                    score=score,
                    threshold=inference.CALIBRATED_THRESHOLD,
                    operating_point=op,
                    is_positive=score >= inference.CALIBRATED_THRESHOLD,
                )
                for name, score, op in zip(
                    classifier.pathologies, prediction.scores, classifier.operating_points, strict=True
                )
            ]
            findings_by_file[source.relative] = findings
            one = time.perf_counter()
            try:
                built[source.relative] = sr_builder.build_sr(
                    source.header,
                    findings,
                    identity,
                    run_at=predicted_at,
                    instance_number=sr_numbers.for_source(source.header, identity),
                )
            except DicomError as exc:
                errors[source.relative] = f"SR not built: {exc}"
            sr_build_s[source.relative] = time.perf_counter() - one
        timings["sr_build_s"] = time.perf_counter() - mark

        mark = time.perf_counter()
        sr_items = [(rel, (lambda data=sr.data: data)) for rel, sr in built.items()]
        sr_outcomes = {
            o.label: o for o in client.upload_many(sr_items, workers=workers, progress=progress, desc="upload SR")
        }
        timings["sr_upload_s"] = time.perf_counter() - mark
        sr_uploaded_at = _utc_now()

        # 6. verify placement from Orthanc itself
        mark = time.perf_counter()
        verified: dict[str, bool] = {}
        for rel, outcome in sr_outcomes.items():
            if not outcome.stored:
                continue
            source_upload = uploads[rel]
            parents = client.parents(str(outcome.orthanc_id))
            verified[rel] = (
                parents.patient_id == source_upload.patient_id
                and parents.study_id == source_upload.study_id
                and parents.series_id != source_upload.series_id
            )
            if not verified[rel]:
                notes[rel] = (
                    f"SR placement mismatch: SR patient/study/series {parents.patient_id}/{parents.study_id}/"
                    f"{parents.series_id}, image {source_upload.patient_id}/{source_upload.study_id}/"
                    f"{source_upload.series_id}"
                )
        timings["verify_s"] = time.perf_counter() - mark
    finally:
        client.close()

    # 7. results JSON + lake
    mark = time.perf_counter()
    pred_by_file = {s.relative: p for s, p in zip(chosen, predictions, strict=True)}
    files: list[FileOutcome] = []
    for source in sources:
        rel = source.relative
        outcome = uploads.get(rel)
        if source.header is None:
            files.append(FileOutcome(rel, SKIPPED, None, None, NOT_CLASSIFIED, note=source.reason))
            continue
        assert outcome is not None
        prediction = pred_by_file.get(rel)
        sr_outcome = sr_outcomes.get(rel)
        if prediction is None:
            model_status = NOT_CLASSIFIED
        elif prediction.ok:
            model_status = CLASSIFIED
        else:
            model_status = CLASSIFY_FAILED
        note = notes.get(rel) or errors.get(rel) or (outcome.error if not outcome.stored else None)
        if outcome.stored is False and prediction is None:
            note = note or "upload failed: not classified"
        files.append(
            FileOutcome(
                file=rel,
                upload_status=outcome.status,
                orthanc_id=outcome.orthanc_id,
                sop_instance_uid=source.uid("SOPInstanceUID"),
                model_status=model_status,
                # A classified image whose SR could not be built counts as an SR failure.
                sr_status=sr_outcome.status if sr_outcome else (FAILED if model_status == CLASSIFIED else None),
                sr_sop_instance_uid=built[rel].sop_instance_uid if rel in built else None,
                placement_verified=verified.get(rel) if sr_outcome else None,
                note=note if note else (sr_outcome.error if sr_outcome and not sr_outcome.stored else None),
            )
        )

    warning = TRAINED_WARNING if identity.weights_trained else UNTRAINED_WARNING
    pseudonym_key = pseudonyms.pseudonym_key(lake)  # results name patients by the lake's keyed pseudonym only
    results_written = 0
    for source in chosen:
        rel = source.relative
        prediction = pred_by_file[rel]
        if not prediction.ok:
            continue
        payload = _result_json(
            source=source,
            upload=uploads[rel],
            identity=identity,
            findings=findings_by_file[rel],
            sr=built.get(rel),
            sr_upload=sr_outcomes.get(rel),
            verified=verified.get(rel),
            warnings=prediction.warnings,
            warning=warning,
            pseudonym_key=pseudonym_key,
            run={
                "run_id": run_id,
                "predicted_at": predicted_at.isoformat(),
                "timings_s": {
                    "decode": round(prediction.decode_s, 4),
                    "forward_share": round(prediction.forward_s, 4),
                    "sr_build": round(sr_build_s.get(rel, 0.0), 4),
                },
            },
        )
        _write_json_atomic(results_dir / f"{source.uid('SOPInstanceUID')}.json", payload)
        results_written += 1

    finished_at = _utc_now()
    timings["write_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - clock
    parts = _write_lake(
        lake,
        run_id=run_id,
        sources=sources,
        uploads=uploads,
        uploaded_at=uploaded_at,
        built=built,
        sr_outcomes=sr_outcomes,
        sr_uploaded_at=sr_uploaded_at,
        findings_by_file=findings_by_file,
        identity=identity,
        predicted_at=predicted_at,
        files=files,
        choice=choice,
        started_at=started_at,
        finished_at=finished_at,
        timings=timings,
    )
    timings = {k: round(v, 3) for k, v in timings.items()}
    return PacsRunSummary(
        run_id=run_id,
        input_dir=str(input_dir),
        orthanc_url=client.settings.url,
        results_dir=str(results_dir),
        model=identity.to_dict(),
        weights_reason=choice.reason,
        files=tuple(files),
        timings_s=timings,
        results_written=results_written,
        lake_parts=tuple(str(p) for p in parts),
    )


def _result_json(
    *,
    source: SourceFile,
    upload: UploadOutcome,
    identity: ModelIdentity,
    findings: Sequence,
    sr: sr_builder.BuiltSr | None,
    sr_upload: UploadOutcome | None,
    verified: bool | None,
    warnings: Sequence[str],
    warning: str,
    pseudonym_key: bytes,
    run: dict,
) -> dict:
    """Per-image results. Everything but the ``run`` block is deterministic for the same inputs.

    The patient appears only as the lake's keyed pseudonym: neither PatientID nor Orthanc's patient
    id (a plain SHA-1 of PatientID, reversible by trying every medical record number).
    """
    header = source.header
    return {
        "warning": warning,
        "source": {
            "file": source.relative,
            "file_name": source.file_name,
            "sha256": source.sha256,
            "sop_instance_uid": source.uid("SOPInstanceUID"),
            "sop_class_uid": source.uid("SOPClassUID"),
            "study_instance_uid": source.uid("StudyInstanceUID"),
            "series_instance_uid": source.uid("SeriesInstanceUID"),
            "patient_pseudonym": pseudonyms.pseudonymise(pseudonym_key, str(header.get("PatientID", "") or "")),
            "modality": source.uid("Modality"),
        },
        "orthanc": {
            "instance_id": upload.orthanc_id,
            "series_id": upload.series_id,
            "study_id": upload.study_id,
        },
        "model": identity.to_dict(),
        "threshold_rule": "is_positive = score >= threshold; op_norm-calibrated scores: 0.5 = operating point",
        "predictions": [finding.to_dict() for finding in findings],
        "sr": {
            "sop_instance_uid": sr.sop_instance_uid if sr else None,
            "series_instance_uid": sr.series_instance_uid if sr else None,
            "study_instance_uid": sr.study_instance_uid if sr else None,
            "sop_class": "Comprehensive 3D SR (TID 1500 Measurement Report)",
            "orthanc_instance_id": sr_upload.orthanc_id if sr_upload else None,
            "stored": bool(sr_upload and sr_upload.stored),
            "placement_verified": verified,
        },
        "warnings": list(warnings),
        "run": run,
    }


def _write_lake(
    lake: Path,
    *,
    run_id: str,
    sources: Sequence[SourceFile],
    uploads: dict[str, UploadOutcome],
    uploaded_at: dt.datetime,
    built: dict,
    sr_outcomes: dict[str, UploadOutcome],
    sr_uploaded_at: dt.datetime,
    findings_by_file: dict,
    identity: ModelIdentity,
    predicted_at: dt.datetime,
    files: Sequence[FileOutcome],
    choice: weights.WeightsChoice,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    timings: dict[str, float],
) -> list[Path]:
    import torch
    import torchxrayvision

    by_rel = {s.relative: s for s in sources}
    upload_rows = []
    for source in sources:
        outcome = uploads.get(source.relative)
        upload_rows.append(
            {
                "run_id": run_id,
                "kind": "image",
                "source_file": source.relative,
                "file_name": source.file_name,
                "source_file_sha256": source.sha256,
                "sop_instance_uid": source.uid("SOPInstanceUID"),
                "study_instance_uid": source.uid("StudyInstanceUID"),
                "series_instance_uid": source.uid("SeriesInstanceUID"),
                "patient_id": None if source.header is None else str(source.header.get("PatientID", "") or ""),
                "orthanc_instance_id": outcome.orthanc_id if outcome else None,
                "orthanc_series_id": outcome.series_id if outcome else None,
                "orthanc_study_id": outcome.study_id if outcome else None,
                "orthanc_patient_id": outcome.patient_id if outcome else None,
                "status": outcome.status if outcome else SKIPPED,
                "error": (outcome.error if outcome else source.reason),
                "referenced_sop_instance_uid": None,
                "uploaded_at": uploaded_at,
            }
        )
    for rel, sr in built.items():
        outcome = sr_outcomes.get(rel)
        source = by_rel[rel]
        upload_rows.append(
            {
                "run_id": run_id,
                "kind": "sr",
                "source_file": rel,
                "file_name": source.file_name,
                "source_file_sha256": None,
                "sop_instance_uid": sr.sop_instance_uid,
                "study_instance_uid": sr.study_instance_uid,
                "series_instance_uid": sr.series_instance_uid,
                "patient_id": sr.patient_id,
                "orthanc_instance_id": outcome.orthanc_id if outcome else None,
                "orthanc_series_id": outcome.series_id if outcome else None,
                "orthanc_study_id": outcome.study_id if outcome else None,
                "orthanc_patient_id": outcome.patient_id if outcome else None,
                "status": outcome.status if outcome else FAILED,
                "error": outcome.error if outcome else "not uploaded",
                "referenced_sop_instance_uid": sr.referenced_sop_instance_uid,
                "uploaded_at": sr_uploaded_at,
            }
        )
    prediction_rows = []
    for rel, findings in findings_by_file.items():
        source = by_rel[rel]
        sr = built.get(rel)
        for finding in findings:
            prediction_rows.append(
                {
                    "run_id": run_id,
                    "sop_instance_uid": source.uid("SOPInstanceUID"),
                    "study_instance_uid": source.uid("StudyInstanceUID"),
                    "series_instance_uid": source.uid("SeriesInstanceUID"),
                    "patient_id": str(source.header.get("PatientID", "") or ""),
                    "source_file": rel,
                    "file_name": source.file_name,
                    "orthanc_instance_id": uploads[rel].orthanc_id,
                    "pathology": finding.pathology,
                    "score": float(finding.score),
                    "threshold": float(finding.threshold),
                    "is_positive": bool(finding.is_positive),
                    "model_name": identity.name,
                    "model_version": identity.version,
                    "weights_sha256": identity.weights_sha256,
                    "weights_trained": identity.weights_trained,
                    "sr_sop_instance_uid": sr.sop_instance_uid if sr else None,
                    "predicted_at": predicted_at,
                }
            )
    attempted = [row for row in files if row.model_status != NOT_CLASSIFIED]
    model_run = {
        "run_id": run_id,
        "model_name": identity.name,
        "model_version": identity.version,
        "weights_file": str(choice.file) if choice.file else None,
        "weights_sha256": identity.weights_sha256,
        "weights_trained": identity.weights_trained,
        "device": "cpu",
        "started_at": started_at,
        "finished_at": finished_at,
        "images_total": len(attempted),
        "images_ok": sum(1 for row in attempted if row.model_status == CLASSIFIED),
        "images_failed": sum(1 for row in attempted if row.model_status == CLASSIFY_FAILED),
        "upload_s": timings.get("upload_s"),
        "inference_s": timings.get("inference_s"),
        "sr_build_s": timings.get("sr_build_s"),
        "sr_upload_s": timings.get("sr_upload_s"),
        "verify_s": timings.get("verify_s"),
        "total_s": timings.get("total_s", 0.0),
        "medlake_version": __version__,
        "torch_version": torch.__version__,
        "torchxrayvision_version": torchxrayvision.__version__,
    }
    delivery_date = started_at.date()
    parts: list[Path] = []
    try:
        for table, rows in (
            ("pacs_uploads", upload_rows),
            ("predictions", prediction_rows),
            ("model_runs", [model_run]),
        ):
            written = lake_io.write_part(
                lake, table, pa.Table.from_pylist(rows, schema=RAW_TABLES[table]), delivery_date, run_id
            )
            if written is not None:
                parts.append(written)
    except OSError as exc:
        raise LakeError(f"cannot write PACS results to {lake}: {exc.strerror or exc}") from exc
    return parts
