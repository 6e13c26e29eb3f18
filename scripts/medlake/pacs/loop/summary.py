"""What a PACS run (or watch) reports: counts, per-file rows, timings; text or JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from medlake.pacs.loop.state import FileOutcome, RunState
from medlake.pacs.orthanc.client import ALREADY_STORED, FAILED, SKIPPED, SUCCESS
from medlake.vocab import ModelStatus, RunStatus


@dataclass(frozen=True)
class PacsRunSummary:
    run_id: str
    kind: str
    status: str
    source: str
    orthanc_url: str
    results_dir: str
    model: dict
    device: str
    weights_reason: str
    gate_policy: dict
    files: tuple[FileOutcome, ...]
    timings_s: dict[str, float]
    results_written: int
    stop_reason: str | None = None
    lake_parts: tuple[str, ...] = field(default=())
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: RunState, *, source: str, extra: dict | None = None) -> PacsRunSummary:
        timings = {k: round(v, 3) for k, v in state.timings.items() if k != "results_written"}
        return cls(
            run_id=state.run_id,
            kind=str(state.kind),
            status=str(state.status),
            source=source,
            orthanc_url=state.client.settings.url,
            results_dir=str(state.results_dir),
            model=state.identity.to_dict(),
            device=str(state.classifier.device),
            weights_reason=state.choice.reason,
            gate_policy=state.policy.to_dict(),
            files=tuple(state.outcomes.values()),
            timings_s=timings,
            results_written=int(state.timings.get("results_written", 0)),
            stop_reason=state.stop_reason,
            lake_parts=tuple(str(p) for p in state.sink.parts),
            extra=dict(extra or {}),
        )

    def _count(self, attribute: str, value: str) -> int:
        return sum(1 for row in self.files if getattr(row, attribute) == value)

    @property
    def images_classified(self) -> int:
        return self._count("model_status", ModelStatus.CLASSIFIED)

    @property
    def images_failed(self) -> int:
        return self._count("model_status", ModelStatus.FAILED)

    @property
    def images_skipped(self) -> int:
        return self._count("model_status", ModelStatus.SKIPPED)

    @property
    def ok(self) -> bool:
        """No upload or model failure, every SR stored and verified, not stopped by an outage. Skips are fine."""
        if self.status == RunStatus.ORTHANC_UNREACHABLE:
            return False
        reported = (ModelStatus.CLASSIFIED, ModelStatus.SR_FROM_LAKE)
        sr_bad = sum(
            1
            for row in self.files
            if row.model_status in reported
            and (row.sr_status not in (SUCCESS, ALREADY_STORED) or not row.placement_verified)
        )
        return self._count("upload_status", FAILED) == 0 and self.images_failed == 0 and sr_bad == 0

    @property
    def images_per_s(self) -> float:
        total = self.timings_s.get("total_s") or 0.0
        return self.images_classified / total if total else 0.0

    def counts(self) -> dict:
        skip_reasons = Counter(str(row.skip_reason) for row in self.files if row.skip_reason)
        return {
            "files": len(self.files),
            "uploaded_success": self._count("upload_status", SUCCESS),
            "uploaded_already_stored": self._count("upload_status", ALREADY_STORED),
            "upload_failed": self._count("upload_status", FAILED),
            "not_dicom": self._count("upload_status", SKIPPED),
            "classified": self.images_classified,
            "classify_failed": self.images_failed,
            "skipped": self.images_skipped,
            "skip_reasons": dict(sorted(skip_reasons.items())),
            "already_reported": self._count("model_status", ModelStatus.ALREADY_REPORTED),
            "sr_from_lake": self._count("model_status", ModelStatus.SR_FROM_LAKE),
            "not_classified": self._count("model_status", ModelStatus.NOT_CLASSIFIED),
            "flagged": sum(1 for row in self.files if row.gate_flags),
            "sr_success": self._count("sr_status", SUCCESS),
            "sr_already_stored": self._count("sr_status", ALREADY_STORED),
            "sr_failed": self._count("sr_status", FAILED),
            "sr_verified": sum(1 for row in self.files if row.placement_verified),
        }

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "ok": self.ok,
            "stop_reason": self.stop_reason,
            "source": self.source,
            "orthanc_url": self.orthanc_url,
            "results_dir": self.results_dir,
            "model": self.model,
            "device": self.device,
            "weights_reason": self.weights_reason,
            "gate_policy": self.gate_policy,
            "counts": self.counts(),
            "timings_s": self.timings_s,
            "images_per_s_end_to_end": round(self.images_per_s, 3),
            "results_written": self.results_written,
            "lake_parts": list(self.lake_parts),
            **self.extra,
            "files": [row.to_dict() for row in self.files],
        }

    def _table(self) -> list[str]:
        header = ("file", "upload", "SOP Instance UID", "model", "reason/flags", "SR", "placed")
        rows = [
            (
                row.file,
                row.upload_status,
                row.sop_instance_uid or "-",
                str(row.model_status),
                str(row.skip_reason or row.gate_flags or "-"),
                row.sr_status or "-",
                {True: "yes", False: "NO", None: "-"}[row.placement_verified],
            )
            for row in self.files
        ]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        widths[0], widths[2] = min(widths[0], 50), min(widths[2], 40)

        def fmt(values: Sequence[str]) -> str:
            cells = []
            for i, value in enumerate(values):
                text = str(value)
                if len(text) > widths[i]:
                    text = "..." + text[-(widths[i] - 3) :]
                cells.append(text.ljust(widths[i]))
            return "  ".join(cells).rstrip()

        return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]

    def render(self) -> str:
        counts = self.counts()
        verdict = "OK" if self.ok else ("STOPPED" if self.stop_reason else "WITH FAILURES")
        lines = [f"medlake pacs {self.kind} {self.run_id}  ({verdict})"]
        if not self.model.get("weights_trained"):
            lines.append("!! UNTRAINED WEIGHTS: every score below is from a random-init model, not a diagnosis !!")
        lines.append(f"model    {self.model.get('name')}  sha256 {str(self.model.get('weights_sha256'))[:16]}...")
        lines.append(f"device   {self.device}   orthanc {self.orthanc_url}   source {self.source}")
        lines.append("")
        if len(self.files) <= 200:
            lines += self._table()
        notes = [(row.file, row.note) for row in self.files if row.note]
        if notes:
            lines += ["", "notes:", *(f"  {file}: {note}" for file, note in notes[:50])]
        lines.append("")
        lines.append(
            f"inputs {counts['files']}: uploaded {counts['uploaded_success']} new + "
            f"{counts['uploaded_already_stored']} already stored, {counts['upload_failed']} failed, "
            f"{counts['not_dicom']} not DICOM/not read"
        )
        reasons = ", ".join(f"{k} {v}" for k, v in counts["skip_reasons"].items()) or "none"
        lines.append(f"gate: {counts['skipped']} skipped ({reasons}); {counts['flagged']} accepted with flags")
        lines.append(
            f"model: {counts['classified']} classified, {counts['classify_failed']} failed, "
            f"{counts['already_reported']} already reported, {counts['sr_from_lake']} SRs rebuilt from the lake, "
            f"{counts['not_classified']} not classified"
        )
        lines.append(
            f"SRs: {counts['sr_success']} stored + {counts['sr_already_stored']} already stored, "
            f"{counts['sr_failed']} not stored; {counts['sr_verified']} verified under their source's patient/study"
        )
        stage = "  ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in self.timings_s.items())
        lines.append(f"timings: {stage}")
        lines.append(
            f"end to end: {self.images_per_s:.2f} images/s; results JSON: {self.results_written} in {self.results_dir}"
        )
        if self.stop_reason:
            lines.append(f"STOPPED: {self.stop_reason}. Re-run to resume: what has its SR is not classified again.")
        return "\n".join(lines)
