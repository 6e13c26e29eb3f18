"""``medlake pacs run``: DICOMs -> Orthanc -> intended-use gate -> TorchXRayVision -> SR -> the lake.

Stage functions over one :class:`~medlake.pacs.loop.state.RunState`:

0. :func:`~medlake.pacs.loop.session.open_run` (shared with ``pacs watch``): fail fast (weights:
   official digest or --allow-untrained-weights; Orthanc reachable with the configured
   credentials; the lake writable), then load the model;
1. :func:`scan_stage`: every file under INPUT, hashed and header-read by the hardened reader;
   a symlink out of INPUT, a non-DICOM or torn file is reported, never fatal, never read;
2. :func:`upload_stage`: every DICOM to Orthanc (``POST /instances``, concurrent, retried, behind
   the circuit breaker); ``AlreadyStored`` is fine;
3. :func:`gate_stage`: the intended-use gate (:mod:`medlake.pacs.gate`) on each header;
   one instance per SOP Instance UID, and only a file whose bytes Orthanc holds (a different
   file reusing a stored UID would get an SR about pixels the PACS lacks); skips land with
   their reason;
4. :func:`medlake.pacs.loop.reporting.Reporter.report`: already-reported instances skipped, then
   classify, build SRs in processes, store each as it is built, land predictions in batches;
5. :func:`~medlake.pacs.loop.session.finish_run`: the ``model_runs`` row and the summary.

Every output made with untrained weights says so (JSON ``warning``, ``weights_trained=false``,
the SR's algorithm name and series description).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from medlake.errors import DicomError, FileRefused
from medlake.lake.files import DeliveryRoot
from medlake.pacs import gate
from medlake.pacs.gate import Decision, GatePolicy, GateResult, SkipReason
from medlake.pacs.loop.reporting import Reporter
from medlake.pacs.loop.rows import image_upload_row, skip_candidate_rows
from medlake.pacs.loop.session import finish_run, open_run
from medlake.pacs.loop.sources import SourceFile, scan_inputs
from medlake.pacs.loop.state import Candidate, FileOutcome, OrthancRef, RunOptions, RunState, utc_now
from medlake.pacs.loop.summary import PacsRunSummary
from medlake.pacs.orthanc.client import (
    ALREADY_STORED,
    DEFAULT_BREAKER_THRESHOLD,
    SKIPPED,
    UploadOutcome,
)
from medlake.pacs.orthanc.identity import StoredCopies
from medlake.vocab import ModelStatus, RunKind

# Back-compatible names for the model statuses.
CLASSIFIED = ModelStatus.CLASSIFIED
CLASSIFY_FAILED = ModelStatus.FAILED
NOT_CLASSIFIED = ModelStatus.NOT_CLASSIFIED
SKIPPED_BY_GATE = ModelStatus.SKIPPED


def scan_stage(state: RunState, input_dir: Path) -> tuple[DeliveryRoot, list[SourceFile]]:
    mark = time.perf_counter()
    root, sources = scan_inputs(input_dir, workers=state.options.workers)
    state.timings["scan_s"] = time.perf_counter() - mark
    return root, sources


def upload_stage(state: RunState, root: DeliveryRoot, sources: Sequence[SourceFile]) -> dict[str, UploadOutcome]:
    """Upload every DICOM; record one FileOutcome per input and land the image upload rows."""
    mark = time.perf_counter()
    dicoms = [s for s in sources if s.header is not None]

    def reader(relative: str):
        def read() -> bytes:
            try:
                return root.read_bytes(relative)  # the symlink policy again: no swap after the scan
            except FileRefused as exc:
                raise OSError(exc.reason) from exc

        return read

    outcomes = state.client.upload_many(
        [(s.relative, reader(s.relative)) for s in dicoms],
        workers=state.options.workers,
        progress=state.options.progress,
        desc="upload",
    )
    uploads = {o.label: o for o in outcomes}
    state.timings["upload_s"] = time.perf_counter() - mark
    uploaded_at = utc_now()
    for source in sources:
        outcome = uploads.get(source.relative)
        note = source.reason if outcome is None else (None if outcome.stored else outcome.error)
        state.record(
            FileOutcome(
                file=source.relative,
                upload_status=outcome.status if outcome else SKIPPED,
                orthanc_id=outcome.orthanc_id if outcome else None,
                sop_instance_uid=source.uid("SOPInstanceUID"),
                model_status=ModelStatus.NOT_CLASSIFIED,
                note=note,
            )
        )
    if state.client.breaker.is_open:
        state.stop_reason = state.client.breaker.message
    state.sink.write(
        {"pacs_uploads": [image_upload_row(state, s, uploads.get(s.relative), uploaded_at) for s in sources]}
    )
    return uploads


def _loop_verdict(
    state: RunState, source: SourceFile, upload: UploadOutcome, seen: dict, stored_copies: StoredCopies
) -> GateResult:
    """The gate, then the loop's own rules: one file per SOP Instance UID, only bytes Orthanc holds."""
    verdict = gate.evaluate(source.header, state.policy)
    if not verdict.accepted:
        return verdict
    sop_uid = str(source.uid("SOPInstanceUID"))
    # Orthanc keeps the first file it received for a SOP Instance UID: only classify that instance
    # (same dataset; the file meta may differ, e.g. when Orthanc received it over DICOM).
    if upload.status == ALREADY_STORED and not stored_copies.holds(
        str(upload.orthanc_id), source.path, str(source.md5)
    ):
        return GateResult.skip(
            SkipReason.NOT_IN_PACS,
            "Orthanc already holds a different file with this SOP Instance UID (first stored wins); "
            "not classified, as its SR would describe pixels the PACS does not have",
        )
    if sop_uid in seen:
        return GateResult.skip(SkipReason.DUPLICATE, f"same file as {seen[sop_uid]} (same SOP Instance UID and bytes)")
    seen[sop_uid] = source.relative
    return verdict


def gate_stage(state: RunState, sources: Sequence[SourceFile], uploads: dict[str, UploadOutcome]) -> list[Candidate]:
    """Decide per stored instance: a Candidate for the model, or a skip landed with its reason."""
    mark = time.perf_counter()
    candidates: list[Candidate] = []
    skipped = []
    seen: dict[str, str] = {}
    stored_copies = StoredCopies(state.client)
    for source in sources:
        upload = uploads.get(source.relative)
        if source.header is None or upload is None or not upload.stored:
            continue
        verdict = _loop_verdict(state, source, upload, seen, stored_copies)
        if verdict.decision == Decision.SKIPPED:
            status = ModelStatus.SKIPPED if verdict.reason in _GATE_REASONS else ModelStatus.NOT_CLASSIFIED
            state.update(source.relative, model_status=status, skip_reason=verdict.reason, note=verdict.detail)
            skipped.append((source.relative, source.file_name, source.header, upload.orthanc_id, verdict))
            continue
        state.update(source.relative, gate_flags=verdict.flags_text)
        candidates.append(
            Candidate(
                label=source.relative,
                file_name=source.file_name,
                path=source.path,
                header=source.header,
                sha256=source.sha256,
                orthanc=OrthancRef(upload.orthanc_id, upload.series_id, upload.study_id, upload.patient_id),
                gate=verdict,
            )
        )
    state.sink.write({"pacs_gate_decisions": skip_candidate_rows(state, skipped)})
    state.timings["gate_s"] = time.perf_counter() - mark
    return candidates


_GATE_REASONS = frozenset(rule.reason for rule in gate.RULES) | {
    SkipReason.BODY_PART_MISSING,
    SkipReason.VIEW_MISSING,
}


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
    policy: GatePolicy | None = None,
    land_batch: int = 16,
    sr_workers: int | None = None,
    classifier=None,
    breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD,
) -> PacsRunSummary:
    """The whole loop over a folder; see the module docstring. Raises MedlakeError subclasses when fatal."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DicomError(f"input directory not found: {input_dir}")
    options = RunOptions(
        workers=workers, batch_size=batch_size, land_batch=land_batch, sr_workers=sr_workers, progress=progress
    )
    state = open_run(
        RunKind.RUN,
        Path(lake),
        results_dir=Path(results_dir),
        options=options,
        policy=policy or GatePolicy(),
        weights_dir=weights_dir,
        allow_untrained=allow_untrained,
        classifier=classifier,
        breaker_threshold=breaker_threshold,
    )
    reporter = None
    try:
        root, sources = scan_stage(state, input_dir)
        uploads = upload_stage(state, root, sources)
        candidates = gate_stage(state, sources, uploads)
        if not state.stopping:
            reporter = Reporter(state)
            mark = time.perf_counter()
            reporter.report(candidates)
            state.timings["report_s"] = time.perf_counter() - mark  # classify .. last batch landed
    finally:
        if reporter is not None:
            reporter.close()
        state.client.close()
    return finish_run(state, source=str(input_dir))
