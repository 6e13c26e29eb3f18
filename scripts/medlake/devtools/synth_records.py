"""One block of a synthetic delivery: its spec, its tallies, and the exam and report records it makes.

:class:`ExamMaker` draws every record from the block's own random stream (same spec, same
records); what an exam always is (id spelling, source, body part, image) comes from
:func:`~medlake.devtools.synth_tables._identity` instead, so a re-delivery repeats it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medlake.devtools.synth_tables import (
    _CLASS_TABLE,
    _DAY_TEXT,
    _DAY_ZERO,
    _LABEL_COUNT_TABLE,
    _SENTENCES,
    _VALUE_TABLE,
    INCREMENT_SECONDS,
    INCREMENT_START,
    LABELLERS,
    LABELS_ABSENT_SHARE,
    LABELS_NULL_SHARE,
    MISSING_FIELD_SHARE,
    REPORT_ID_MISMATCH_SHARE,
    REPORT_PUBLICATION_SHARE,
    REPORT_STRING_ID_SHARE,
    YEAR_SECONDS,
    YEAR_START,
    _day_text,
    _identity,
)


@dataclass(frozen=True)
class _BlockSpec:
    out: str
    seed: int
    block: int
    first_slot: int  # global index of the block's first exam record (ids are slot + 1)
    records: int  # landable exam records in this block (originals + re-deliveries)
    redeliveries: int
    dicom_originals: int  # how many of the block's first originals get a DICOM file
    identity_seed: int  # seed of the exams' identities (the base delivery's seed, for an increment)
    base_exams: int = 0  # > 0: an increment; its re-deliveries are of base exam ids 1..base_exams
    base_dicom_exams: int = 0  # base exam ids 1..K have chest images (their re-deliveries stay chest)
    records_per_file: int = 0  # > 0: files of this many records (a block's at most), else 1-4 like the sample

    @property
    def kind(self) -> str:
        return "increment" if self.base_exams else "base"


@dataclass
class _BlockStats:
    counts: Counter[str] = field(default_factory=Counter)
    covid_without_pneumonia: Counter[str] = field(default_factory=Counter)
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (path under out, bytes) to create


class ExamMaker:
    """Exam, label and report records from one block's random stream."""

    def __init__(self, spec: _BlockSpec, rng: random.Random, counts: Counter[str]) -> None:
        self.spec = spec
        self.rng = rng
        self.random = rng.random
        self.counts = counts

    def timestamp(self) -> float:
        if self.spec.base_exams:  # an increment comes after everything its base delivered
            return round(INCREMENT_START + self.rng.random() * INCREMENT_SECONDS, 6)
        return round(YEAR_START + self.rng.random() * YEAR_SECONDS, 6)

    def pick(self, table: tuple[Any, ...]) -> Any:
        return table[int(self.random() * len(table))]

    def labels(self, published: float, allow_covid: bool) -> list[dict[str, Any]]:
        rand, pick = self.random, self.pick
        # The hot loop of synth (4-5 labels per exam): table lookups inlined, no helper calls.
        classes, n_classes = _CLASS_TABLE, len(_CLASS_TABLE)
        values, n_values = _VALUE_TABLE, len(_VALUE_TABLE)
        labellers, n_labellers = LABELLERS, len(LABELLERS)
        days, first_day = _DAY_TEXT, published - _DAY_ZERO
        labels = []
        for _ in range(pick(_LABEL_COUNT_TABLE)):
            (classification, canonical) = classes[int(rand() * n_classes)]
            (value, positive) = values[int(rand() * n_values)]
            if canonical == "covid" and positive and not allow_covid:
                value = False
            label: dict[str, Any] = {
                "classification": classification,
                "labelled_by": labellers[int(rand() * n_labellers)],
                "labelled_date": days[int(first_day - rand() * 400 * 86_400) // 86_400],
                "labelling_method": "ml_model" if rand() < 0.5 else "physician",
                "classification_type": "binary",
                "value": value,
            }
            if rand() < MISSING_FIELD_SHARE:
                del label[pick(("labelled_date", "labelling_method", "labelled_by"))]
            labels.append(label)
        return labels

    def exam(self, exam_id: int, *, with_id: bool, dicom: bool, published: float) -> dict[str, Any]:
        rand, pick = self.random, self.pick
        id_value, source, dataset_type, dataset, body_part, image_path = _identity(
            self.spec.identity_seed, exam_id, dicom
        )
        content: dict[str, Any] = {}
        if with_id:
            content["id"] = id_value
        content["source"] = source
        content["dataset_type"] = dataset_type
        content["dataset"] = dataset
        content["body_part"] = body_part
        content["image_path"] = image_path
        roll = rand()
        if roll < LABELS_ABSENT_SHARE:
            pass
        elif roll < LABELS_ABSENT_SHARE + LABELS_NULL_SHARE:
            content["labels"] = None
        else:
            content["labels"] = self.labels(published, allow_covid=with_id)
        if not dicom and rand() < MISSING_FIELD_SHARE * 4:
            del content[pick(("source", "dataset_type", "dataset", "body_part", "image_path"))]
        return {"content": content, "publication_timestamp": published}

    def report(self, exam: dict[str, Any]) -> dict[str, Any]:
        rand, pick = self.random, self.pick
        exam_id = exam["content"].get("id")
        content: dict[str, Any] = {}
        if exam_id is not None:
            number = int(exam_id)
            if rand() < REPORT_ID_MISMATCH_SHARE:
                number += 1  # the real sample's off-by-one, for the data-quality finding
                self.counts["report_exam_id_mismatches"] += 1
            content["exam_id"] = str(number) if rand() < REPORT_STRING_ID_SHARE else number
        reported = exam["publication_timestamp"] + rand() * 5 * 86_400
        content["report_date"] = _day_text(reported)
        content["reported_by"] = pick(LABELLERS)
        content["text"] = " ".join(pick(_SENTENCES) for _ in range(1 + int(rand() * 3)))
        report: dict[str, Any] = {"content": content}
        if rand() < REPORT_PUBLICATION_SHARE:
            report["publication_timestamp"] = round(reported, 6)
        return report
