"""Writing one block of a synthetic delivery: files of 1-4 records, re-deliveries, injected faults.

A :class:`_BlockWriter` turns a :class:`~medlake.devtools.synth_records._BlockSpec` into file
bytes (kept, not written: one process creates all files, see ``synth._create_files``), the
block's DICOMs, and the tallies the summary's expected answers are summed from.
"""

from __future__ import annotations

import datetime as dt
import gc
import random
from pathlib import Path
from typing import Any

import orjson

from medlake.devtools.synth_dicom import write_chest_cr
from medlake.devtools.synth_records import ExamMaker, _BlockSpec, _BlockStats
from medlake.devtools.synth_tables import (
    _CANONICAL_BODY,
    _CANONICAL_CLASS,
    _FILE_SIZE_TABLE,
    BAD_BLOCK_SHARE,
    JSON_LINES_SHARE,
    MISSING_ID_SHARE,
    REDELIVERY_DELAY_SECONDS,
    REDELIVERY_SHARE,
    SINGLE_OBJECT_SHARE,
    _file_name,
    _is_positive,
    uid_for,
)


def _redeliveries(records: int, share: float = REDELIVERY_SHARE) -> int:
    return 0 if records < 5 else max(1, round(records * share))


class _BlockWriter:
    """Generates and writes one block of the delivery."""

    def __init__(self, spec: _BlockSpec) -> None:
        self.spec = spec
        self.rng = random.Random(f"medlake-synth:{spec.seed}:{spec.block}")
        self.random = self.rng.random
        self.stats = _BlockStats()
        self.make = ExamMaker(spec, self.rng, self.stats.counts)
        self.out = Path(spec.out)
        self.file_index = 0
        self.bad_block = spec.block == 0 or self.rng.random() < BAD_BLOCK_SHARE
        self.forced_layouts = {"json_lines", "object"} if spec.block == 0 else set()

    # -- files --

    def _layout(self, records: int) -> str:
        rand = self.random
        if records == 1 and ("object" in self.forced_layouts or rand() < SINGLE_OBJECT_SHARE):
            self.forced_layouts.discard("object")
            return "object"
        if records > 1 and ("json_lines" in self.forced_layouts or rand() < JSON_LINES_SHARE):
            self.forced_layouts.discard("json_lines")
            return "json_lines"
        return "array"

    @staticmethod
    def _encode(records: list[Any], layout: str) -> bytes:
        if layout == "object":
            return orjson.dumps(records[0])
        if layout == "json_lines":
            return b"\n".join(orjson.dumps(record) for record in records) + b"\n"
        return orjson.dumps(records)

    def _next_name(self) -> str:
        name = _file_name(self.spec.kind, self.spec.seed, self.spec.block, self.file_index)
        self.file_index += 1
        return name

    def _write(self, directory: str, name: str, data: bytes) -> None:
        # Kept, not written: one process creates all JSON files (see generate()).
        self.stats.files.append((f"{directory}/{name}", data))
        self.stats.counts[f"{directory}_files"] += 1

    def _write_exam_file(self, exams: list[dict[str, Any]], extra_bad_record: bool = False) -> None:
        layout = self._layout(len(exams) + int(extra_bad_record))
        records: list[Any] = list(exams)
        if extra_bad_record:
            # A record without `content`, last in the file so the reports keep their positions.
            records.append({"publication_timestamp": self.make.timestamp(), "contents": {"id": "misspelled key"}})
            self.stats.counts["records_without_content"] += 1
        name = self._next_name()
        self._write("exam", name, self._encode(records, layout))
        self._write("medical_report", name, self._encode([self.make.report(exam) for exam in exams], layout))
        self.stats.counts["report_records"] += len(exams)
        self.stats.counts[f"{layout}_files"] += 1

    def _pack(self, exams: list[dict[str, Any]], inject_bad_record: bool) -> None:
        """Write exams into files of 1-4 records (the real sample's sizes), or of ``records_per_file``."""
        start = 0
        fixed = self.spec.records_per_file
        while start < len(exams):
            size = fixed or _FILE_SIZE_TABLE[int(self.random() * len(_FILE_SIZE_TABLE))]
            chunk = exams[start : start + size]
            start += size
            extra = inject_bad_record and (len(chunk) < 4 or fixed > 0)
            self._write_exam_file(chunk, extra_bad_record=extra)
            inject_bad_record = inject_bad_record and not extra

    def _write_bad_files(self) -> None:
        published = self.make.timestamp()
        truncated = orjson.dumps([{"content": {"id": 0, "source": "hospital ABC"}, "publication_timestamp": published}])
        self._write("exam", self._next_name(), truncated[: len(truncated) // 2])
        self.stats.counts["invalid_json_files"] += 1
        self._write("exam", self._next_name(), b"")
        self.stats.counts["empty_files"] += 1
        self._write("medical_report", self._next_name(), b"  \n\t\n")
        self.stats.counts["whitespace_files"] += 1

    def run(self) -> _BlockStats:
        spec, rng, counts = self.spec, self.rng, self.stats.counts
        originals = spec.records - spec.redeliveries
        latest: dict[int, dict[str, Any]] = {}
        exams: list[dict[str, Any]] = []
        for offset in range(originals):
            exam_id = spec.first_slot + offset + 1
            dicom = offset < spec.dicom_originals
            with_id = dicom or self.random() >= MISSING_ID_SHARE
            exam = self.make.exam(exam_id, with_id=with_id, dicom=dicom, published=self.make.timestamp())
            exams.append(exam)
            if with_id:
                latest[exam_id] = exam
            else:
                counts["exams_without_id"] += 1
                self._tally(exam)
            if dicom:
                self._write_dicom(exam_id, exam)
        if self.bad_block:
            self._inject_label_not_object(exams)
        self._pack(exams, inject_bad_record=self.bad_block)
        # Re-deliveries: same identity (_identity), new labels, a later publication_timestamp.
        redelivered: list[dict[str, Any]] = []
        candidates = sorted(latest)
        for _ in range(spec.redeliveries if candidates or spec.base_exams else 0):
            if spec.base_exams:
                exam_id = 1 + int(self.random() * spec.base_exams)
                dicom = exam_id <= spec.base_dicom_exams
                published = self.make.timestamp()
            else:
                exam_id = rng.choice(candidates)
                dicom = exam_id <= spec.first_slot + spec.dicom_originals
                delay = rng.uniform(*REDELIVERY_DELAY_SECONDS)
                published = round(latest[exam_id]["publication_timestamp"] + delay, 6)
            again = self.make.exam(exam_id, with_id=True, dicom=dicom, published=published)
            redelivered.append(again)
            if exam_id not in latest or published >= latest[exam_id]["publication_timestamp"]:
                latest[exam_id] = again
        counts["redelivered_records"] += len(redelivered)
        self._pack(redelivered, inject_bad_record=False)
        if self.bad_block:
            self._write_bad_files()
        counts["exam_records"] += len(exams) + len(redelivered)
        counts["label_objects"] += sum(
            sum(1 for label in exam["content"].get("labels") or () if isinstance(label, dict))
            for exam in (*exams, *redelivered)
        )
        counts["distinct_exam_ids"] += len(latest)
        for exam in latest.values():
            self._tally(exam)
        return self.stats

    def _inject_label_not_object(self, exams: list[dict[str, Any]]) -> None:
        """Put a string among one exam's labels: that element is quarantined, the exam lands."""
        for exam in exams:
            labels = exam["content"].get("labels")
            if labels:
                labels.insert(self.rng.randrange(len(labels) + 1), "covid19: positive")
                self.stats.counts["label_not_object"] += 1
                return

    def _tally(self, exam: dict[str, Any]) -> None:
        """Count one exam's latest delivery into the expected answers."""
        content = exam["content"]
        labels = [label for label in content.get("labels") or () if isinstance(label, dict)]
        self.stats.counts["label_objects_latest"] += len(labels)
        positive = {
            _CANONICAL_CLASS.get(label.get("classification")) for label in labels if _is_positive(label.get("value"))
        }
        if "covid" in positive and "pneumonia" not in positive:
            month = dt.datetime.fromtimestamp(exam["publication_timestamp"], dt.UTC).strftime("%Y-%m")
            self.stats.covid_without_pneumonia[month] += 1
        if _CANONICAL_BODY.get(content.get("body_part")) == "chest" and len(labels) >= 6:
            self.stats.counts["chest_exams_with_6plus_labels"] += 1

    def _write_dicom(self, exam_id: int, exam: dict[str, Any]) -> None:
        seed = self.spec.identity_seed
        sop_uid = uid_for(seed, f"exam:{exam_id}:sop")
        write_chest_cr(
            self.out / "images" / f"{sop_uid}.dcm",
            seed=seed,
            exam_id=exam_id,
            sop_instance_uid=sop_uid,
            study_instance_uid=uid_for(seed, f"exam:{exam_id}:study"),
            series_instance_uid=uid_for(seed, f"exam:{exam_id}:series"),
            published=exam["publication_timestamp"],
        )
        self.stats.counts["images_files"] += 1


def _write_block(spec: _BlockSpec) -> _BlockStats:
    # Only acyclic dicts and lists are made here: the cyclic collector would just re-walk them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _BlockWriter(spec).run()
    finally:
        if gc_was_enabled:
            gc.enable()
