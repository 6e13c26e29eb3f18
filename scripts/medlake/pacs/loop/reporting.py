"""The streamed back half of the loop: classify -> build SRs -> store each -> land in batches.

Stages overlap so the loop is bounded by inference: the classifier yields each batch as soon
as it has run; each image's SR is patched from its model's template (:mod:`medlake.pacs.sr.template`,
~8 ms) in a builder thread (or ``sr_workers`` processes, which import only :mod:`medlake.pacs.sr`)
while the next batch runs; each SR is stored in Orthanc by a thread
as soon as it is built, and its placement checked; every ``land_batch`` finished images their
predictions, SR upload rows and results JSON are landed. Nothing waits for the whole input.

Before any of that, :meth:`Reporter.triage` asks what is already done for this model identity:
our SR in Orthanc (deterministic SR UID) *and* predictions in the lake: skipped as
``already_reported``; predictions in the lake but no SR (an Orthanc outage stopped an earlier
run): the SR is built from the landed scores and stored, nothing is classified or landed twice;
anything else is classified (an SR without landed predictions means a run died between storing
and landing: classifying again loses nothing, and storing the identical SR answers AlreadyStored).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from medlake.errors import OrthancError
from medlake.lake import pseudonyms
from medlake.pacs.gate import GateResult, SkipReason
from medlake.pacs.loop import rows as lake_rows
from medlake.pacs.loop.state import Candidate, RunState, utc_now
from medlake.pacs.model.inference import CALIBRATED_THRESHOLD, ImagePrediction, iter_classify
from medlake.pacs.orthanc.client import FAILED, UploadOutcome
from medlake.pacs.sr import builder as sr_builder
from medlake.pacs.sr import template as sr_template
from medlake.pacs.sr.numbering import SrInstanceNumbers
from medlake.vocab import ModelStatus

UNTRAINED_WARNING = (
    "UNTRAINED: these scores come from a randomly initialised DenseNet-121 (torch.manual_seed(0)), not the official "
    "TorchXRayVision weights. Pipeline output for demos and tests only - not a diagnosis, not for clinical use."
)
TRAINED_WARNING = (
    "Research model output (TorchXRayVision densenet121-res224-all): not a diagnosis, not for clinical use."
)


def findings_for(classifier, scores: Sequence[float]) -> list[sr_builder.Finding]:
    """One Finding per pathology: the calibrated score against the model's operating point (0.5)."""
    return [
        sr_builder.Finding(
            pathology=name,
            score=score,
            threshold=CALIBRATED_THRESHOLD,
            operating_point=op,
            is_positive=score >= CALIBRATED_THRESHOLD,
        )
        for name, score, op in zip(classifier.pathologies, scores, classifier.operating_points, strict=True)
    ]


@dataclass
class Reported:
    """One image's trip through the back half."""

    candidate: Candidate
    findings: list[sr_builder.Finding] = field(default_factory=list)
    prediction: ImagePrediction | None = None
    from_lake: bool = False
    built: sr_builder.BuiltSr | None = None
    build_s: float = 0.0
    sr_upload: UploadOutcome | None = None
    verified: bool | None = None
    error: str | None = None
    note: str | None = None

    @property
    def sr_stored(self) -> bool:
        return bool(self.sr_upload and self.sr_upload.stored)


class Reporter:
    """Owns the SR process pool and the store threads for a run (or a whole watch)."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        # SRs come from a per-model template (~8 ms each, medlake.pacs.sr.template): one thread in
        # this process keeps up with inference, where each worker process cost ~1 s of start-up CPU.
        workers = state.options.sr_workers or 0
        # Backpressure: inference waits when this many images are between classified and stored, so a
        # slow SR stage or a dead Orthanc cannot leave a pile of classified-but-unreported images behind.
        self.max_in_flight = 2 * max(1, workers) + state.options.batch_size
        self.builders: Executor = (
            ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=sr_template.init_worker
            )
            if workers > 0
            else ThreadPoolExecutor(1, thread_name_prefix="sr-build")
        )
        self.storers = ThreadPoolExecutor(max(1, state.options.workers), thread_name_prefix="sr-store")
        # InstanceNumbers are handed out here, in the process that talks to Orthanc, before the build.
        self.sr_numbers = SrInstanceNumbers.from_orthanc(state.client)
        self.images_reported = 0
        self.pseudonym_key: bytes | None = None

    def close(self) -> None:
        self.builders.shutdown(wait=True, cancel_futures=True)
        self.storers.shutdown(wait=True, cancel_futures=True)

    # --- triage ------------------------------------------------------------------------

    def triage(self, candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[Reported]]:
        """(to classify, SRs to rebuild from landed scores); already reported ones are recorded."""
        state = self.state
        identity = state.identity

        failures: list[str] = []

        def has_our_sr(candidate: Candidate) -> bool | None:
            try:
                return bool(
                    state.client.find_instances(sr_builder.sr_instance_uid(candidate.sop_instance_uid, identity))
                )
            except OrthancError as exc:
                failures.append(str(exc))
                return None

        with ThreadPoolExecutor(max(1, state.options.workers)) as pool:
            known = list(pool.map(has_our_sr, candidates))
        if failures:
            # Not knowing what is done means not knowing what to do: stop (a watch keeps its cursor).
            state.stop_reason = state.client.breaker.message or f"Orthanc lookup failed: {failures[0]}"
        to_classify: list[Candidate] = []
        from_lake: list[Reported] = []
        gate_rows = []
        now = utc_now()
        for candidate, has_sr in zip(candidates, known, strict=True):
            landed = state.sink.predictions_for(candidate.sop_instance_uid)
            verdict = candidate.gate
            if has_sr is None or state.stopping:
                state.update(candidate.label, model_status=ModelStatus.NOT_CLASSIFIED, note=state.stop_reason)
                continue
            if has_sr and landed:
                verdict = GateResult.skip(
                    SkipReason.ALREADY_REPORTED, "our SR is in Orthanc and its predictions in the lake"
                )
                state.update(
                    candidate.label,
                    model_status=ModelStatus.ALREADY_REPORTED,
                    skip_reason=SkipReason.ALREADY_REPORTED,
                    sr_sop_instance_uid=sr_builder.sr_instance_uid(candidate.sop_instance_uid, identity),
                )
            elif landed:
                from_lake.append(Reported(candidate, findings=self._findings_from_lake(landed), from_lake=True))
            else:
                to_classify.append(candidate)
            gate_rows.append(
                lake_rows.gate_row(
                    state.run_id,
                    source=candidate.label,
                    file_name=candidate.file_name,
                    header=candidate.header,
                    orthanc_id=candidate.orthanc.instance_id,
                    gate=GateResult(verdict.decision, verdict.reason, verdict.detail, candidate.gate.flags),
                    at=now,
                )
            )
        state.sink.write({"pacs_gate_decisions": gate_rows})
        return to_classify, from_lake

    def _findings_from_lake(self, rows: list[dict]) -> list[sr_builder.Finding]:
        by_pathology = {row["pathology"]: row for row in rows}
        classifier = self.state.classifier
        return [
            sr_builder.Finding(
                pathology=name,
                score=float(by_pathology[name]["score"]),
                threshold=float(by_pathology[name]["threshold"]),
                operating_point=op,
                is_positive=bool(by_pathology[name]["is_positive"]),
            )
            for name, op in zip(classifier.pathologies, classifier.operating_points, strict=True)
            if name in by_pathology
        ]

    def _findings(self, scores: Sequence[float]) -> list[sr_builder.Finding]:
        return findings_for(self.state.classifier, scores)

    # --- the stream ----------------------------------------------------------------------

    def report(self, candidates: Sequence[Candidate]) -> None:
        """Triage, then classify/build/store/land ``candidates``; returns when all are landed."""
        if not candidates:
            return
        state = self.state
        to_classify, from_lake = self.triage(candidates)
        by_path = {candidate.path: candidate for candidate in to_classify}
        flow = _Flow(self)
        for item in from_lake:
            flow.build(item)
        mark = time.perf_counter()
        seen: set[Path] = set()
        if to_classify and not state.stopping:
            stream = iter_classify([c.path for c in to_classify], state.classifier, batch_size=state.options.batch_size)
            for prediction in stream:
                seen.add(prediction.path)
                item = Reported(by_path[prediction.path], prediction=prediction)
                if prediction.ok:
                    item.findings = self._findings(prediction.scores or ())
                    flow.build(item)
                else:
                    item.error = str(prediction.error)
                    flow.done.append(item)
                flow.pump(block=False)
                while flow.in_flight >= self.max_in_flight and not state.client.breaker.is_open:
                    flow.pump(block=True)
                if state.client.breaker.is_open:
                    state.stop_reason = state.client.breaker.message
                    break
            stream.close()
        state.add_time("inference_s", time.perf_counter() - mark)
        for candidate in to_classify:
            if candidate.path not in seen:
                state.update(
                    candidate.label,
                    model_status=ModelStatus.NOT_CLASSIFIED,
                    note=f"not classified: the run stopped ({state.stop_reason})",
                )
        flow.drain()

    # --- landing ---------------------------------------------------------------------------

    def land(self, items: Sequence[Reported]) -> None:
        if not items:
            return
        state = self.state
        mark = time.perf_counter()
        predictions, uploads = [], []
        for item in items:
            predictions += lake_rows.prediction_rows(state, item)
            uploads += lake_rows.sr_upload_rows(state, item)
            self._record(item)
            if item.findings and item.prediction is not None and item.prediction.ok:
                self._write_result_json(item)
        state.sink.write({"predictions": predictions, "pacs_uploads": uploads})
        self.images_reported += len(items)
        state.add_time("land_s", time.perf_counter() - mark)

    def _record(self, item: Reported) -> None:
        if item.from_lake:
            status = ModelStatus.SR_FROM_LAKE
        elif item.prediction is not None and item.prediction.ok:
            status = ModelStatus.CLASSIFIED
        else:
            status = ModelStatus.FAILED
        upload = item.sr_upload
        sr_status = upload.status if upload else (FAILED if item.findings else None)
        note = item.note or item.error or (upload.error if upload and not upload.stored else None)
        self.state.update(
            item.candidate.label,
            model_status=status,
            sr_status=sr_status,
            sr_sop_instance_uid=item.built.sop_instance_uid if item.built else None,
            placement_verified=item.verified,
            note=note,
        )

    def _write_result_json(self, item: Reported) -> None:
        state = self.state
        if self.pseudonym_key is None:
            self.pseudonym_key = pseudonyms.pseudonym_key(state.lake)  # results name patients by pseudonym only
        warning = TRAINED_WARNING if state.identity.weights_trained else UNTRAINED_WARNING
        payload = lake_rows.result_json(state, item, warning, self.pseudonym_key)
        path = state.results_dir / f"{item.candidate.sop_instance_uid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        state.timings["results_written"] = state.timings.get("results_written", 0) + 1


class _Flow:
    """In-flight SR builds and stores of one :meth:`Reporter.report` call."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.state = reporter.state
        self.builds: dict[Future, Reported] = {}
        self.stores: dict[Future, Reported] = {}
        self.done: list[Reported] = []

    @property
    def in_flight(self) -> int:
        return len(self.builds) + len(self.stores)

    def build(self, item: Reported) -> None:
        header, identity = item.candidate.header, self.state.identity
        try:
            number = self.reporter.sr_numbers.for_source(header, identity)
        except OrthancError as exc:
            item.error = f"SR not built: {exc}"
            self.done.append(item)
            return
        future = self.reporter.builders.submit(
            sr_template.build_job, header, item.findings, identity, utc_now(), number
        )
        self.builds[future] = item

    def _store(self, item: Reported) -> Reported:
        client = self.state.client
        mark = time.perf_counter()
        item.sr_upload = client.upload(item.built.data, label=item.candidate.label)
        self.state.add_time("sr_upload_s", time.perf_counter() - mark)
        if item.sr_upload.stored:
            item.verified = self._verify(item)
        return item

    def _verify(self, item: Reported) -> bool | None:
        source = item.candidate.orthanc
        try:
            parents = self.state.client.parents(str(item.sr_upload.orthanc_id))
        except OrthancError as exc:
            item.note = f"SR stored, placement not verified: {exc}"
            return None
        verified = (
            parents.patient_id == source.patient_id
            and parents.study_id == source.study_id
            and parents.series_id != source.series_id
        )
        if not verified:
            item.note = (
                f"SR placement mismatch: SR patient/study/series {parents.patient_id}/{parents.study_id}/"
                f"{parents.series_id}, image {source.patient_id}/{source.study_id}/{source.series_id}"
            )
        return verified

    def pump(self, *, block: bool) -> None:
        """Move finished builds to the store threads and finished stores to ``done``; land full batches."""
        pending = list(self.builds) + list(self.stores)
        if pending:
            finished, _ = wait(pending, timeout=None if block else 0, return_when=FIRST_COMPLETED)
            for future in finished:
                if future in self.builds:
                    item = self.builds.pop(future)
                    item.built, error, item.build_s = future.result()
                    self.state.add_time("sr_build_s", item.build_s)
                    if item.built is None:
                        item.error = error
                        self.done.append(item)
                    else:
                        self.stores[self.reporter.storers.submit(self._store, item)] = item
                else:
                    self.stores.pop(future)
                    self.done.append(future.result())
        if len(self.done) >= self.state.options.land_batch:
            self.reporter.land(self.done)
            self.done = []

    def drain(self) -> None:
        while self.builds or self.stores:
            self.pump(block=True)
        self.reporter.land(self.done)
        self.done = []
