"""The one object a PACS run's stages share (``pacs run`` and ``pacs watch`` alike).

A stage function takes the :class:`RunState` and the items it works on; everything a later
stage or the summary needs is recorded on the state (one :class:`FileOutcome` per input, the
timings, the stop reason), never in parallel dicts keyed by path.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from medlake.pacs.gate import GatePolicy, GateResult
from medlake.vocab import RunKind, RunStatus, SkipReason

if TYPE_CHECKING:
    from medlake.pacs.loop.sink import LakeSink
    from medlake.pacs.model.inference import Classifier
    from medlake.pacs.model.weights import WeightsChoice
    from medlake.pacs.orthanc.client import OrthancClient


@dataclass(frozen=True)
class OrthancRef:
    """Where Orthanc files an instance."""

    instance_id: str | None
    series_id: str | None = None
    study_id: str | None = None
    patient_id: str | None = None


@dataclass(frozen=True)
class Candidate:
    """One DICOM instance on its way through the loop: a local file to decode and its header."""

    label: str  # relative path under --input, or 'orthanc:<instance id>'
    file_name: str
    path: Path
    header: Dataset
    sha256: str | None
    orthanc: OrthancRef
    gate: GateResult

    def uid(self, keyword: str) -> str | None:
        value = self.header.get(keyword)
        return None if value is None else str(value)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.header.SOPInstanceUID)


@dataclass(frozen=True)
class FileOutcome:
    """The per-input row of the summary: upload, gate, model and SR outcome."""

    file: str
    upload_status: str
    orthanc_id: str | None
    sop_instance_uid: str | None
    model_status: str
    sr_status: str | None = None
    sr_sop_instance_uid: str | None = None
    placement_verified: bool | None = None
    note: str | None = None
    skip_reason: SkipReason | None = None
    gate_flags: str | None = None

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "upload_status": self.upload_status,
            "orthanc_id": self.orthanc_id,
            "sop_instance_uid": self.sop_instance_uid,
            "model_status": str(self.model_status),
            "skip_reason": None if self.skip_reason is None else str(self.skip_reason),
            "gate_flags": self.gate_flags,
            "sr_status": self.sr_status,
            "sr_sop_instance_uid": self.sr_sop_instance_uid,
            "placement_verified": self.placement_verified,
            "note": self.note,
        }


@dataclass(frozen=True)
class RunOptions:
    workers: int = 4
    batch_size: int = 8
    land_batch: int = 16  # predictions are landed every this many reported images
    sr_workers: int | None = None  # processes building SRs (None or 0: one thread of this process)
    progress: bool = True


def new_run_id(started: dt.datetime) -> str:
    return f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class RunState:
    """Everything one run knows: its identity and tools, and what happened to each input."""

    kind: RunKind
    lake: Path
    results_dir: Path
    options: RunOptions
    policy: GatePolicy
    client: OrthancClient
    choice: WeightsChoice
    classifier: Classifier
    sink: LakeSink
    started_at: dt.datetime = field(default_factory=utc_now)
    clock: float = field(default_factory=time.perf_counter)  # for total_s
    run_id: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)  # by label, in arrival order
    stop_reason: str | None = None
    status: RunStatus = RunStatus.RUNNING
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.started_at)

    @property
    def identity(self):
        return self.classifier.identity

    def record(self, outcome: FileOutcome) -> None:
        with self._lock:
            self.outcomes[outcome.file] = outcome

    def update(self, label: str, **changes) -> None:
        with self._lock:
            self.outcomes[label] = replace(self.outcomes[label], **changes)

    def add_time(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.timings[stage] = self.timings.get(stage, 0.0) + seconds

    def counts(self) -> Counter:
        with self._lock:
            rows = list(self.outcomes.values())
        counts: Counter = Counter()
        for row in rows:
            counts[f"model:{row.model_status}"] += 1
            counts[f"upload:{row.upload_status}"] += 1
            if row.sr_status:
                counts[f"sr:{row.sr_status}"] += 1
            if row.skip_reason:
                counts[f"skip:{row.skip_reason}"] += 1
        return counts

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None
