"""``medlake synth``: a deterministic synthetic delivery in exactly the raw shape, with every quirk.

Layout written under ``OUT``::

    exam/<uuid>.json             1-4 exam records per file (array, single object or JSON lines)
    medical_report/<uuid>.json   one report per exam, same file name, same position
    images/<SOPInstanceUID>.dcm  small synthetic chest CRs for the first K exams
    synth_summary.json           the ground truth (counts and expected answers), no wall time

Same seed -> same bytes. The exams are generated in blocks of :data:`BLOCK_EXAMS` records;
each block has its own random stream seeded from (seed, block index), so blocks are
generated in parallel worker processes and the output does not depend on the worker count.
The main process creates the blocks' files in block order (one writer per directory is
faster than two). Memory stays flat as ``exams`` grows: a few blocks are in flight at a time.

Exam files hold 1-4 exams (mean 2, so a million exams are about 500 k exam files, like real
deliveries); the ids are 1..N in record order, re-delivery slots reuse an earlier id. The
first K exams (``dicom_exams``) get a chest body_part and a DICOM named after the SOP
Instance UID their ``image_path`` ends with (``gs://medlake-synth/chest/<uid>.dcm``).

What a delivery looks like (shares are per record unless noted):

* ``id`` an int, or a numeric string (15%), or missing (0.3%);
* ``source`` a string or a one-element list (70%); a few fields missing (0.3% each);
* classification spellings (``covid19``, ``Covid19``, ``COVID-19``, ``covid``, ``pneumonia``,
  ``Pneumonia``, ``Hernia``, ``hernia``, ...), body_part spellings (``CHEST``, ``Chest``, ``chest``,
  ``BREAST``, ...), label ``value`` a bool or ``"True"``/``"false"``/... text;
* ``labels`` absent (1%) or null (1%), 0-8 labels otherwise;
* re-deliveries: 2% of a block's records re-deliver an earlier exam of the block in a later
  file, with a later ``publication_timestamp`` and new labels;
* per block, with probability 5% (always in block 0): an invalid JSON exam file, a record
  without ``content``, a label element that is a string, an empty exam file and a
  whitespace-only report file. Some files are JSON lines or a single object.

``exams`` counts the landable exam records (originals + re-deliveries); injected bad
records come on top. The expected answers in the summary use these semantics: the latest
delivery (by ``publication_timestamp``) of each exam id; classification canonicalised
(``covid19``/``COVID-19``/``covid`` -> covid); a label is positive when its value is ``true`` in
any spelling; an exam's month is its latest publication month (UTC). Exams without an id
never carry a positive covid label, so the answer does not depend on how they are treated.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import itertools
import multiprocessing
import os
import random
import shutil
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from medlake.errors import SynthError

BLOCK_EXAMS = 1_000
SUMMARY_FILE = "synth_summary.json"
DEFAULT_DICOM_EXAMS = 24
IMAGE_URI_PREFIX = "gs://medlake-synth"

REDELIVERY_SHARE = 0.02
STRING_ID_SHARE = 0.15
MISSING_ID_SHARE = 0.003
MISSING_FIELD_SHARE = 0.003
SOURCE_AS_LIST_SHARE = 0.70
LABELS_ABSENT_SHARE = 0.01
LABELS_NULL_SHARE = 0.01
BAD_BLOCK_SHARE = 0.05
JSON_LINES_SHARE = 0.05
SINGLE_OBJECT_SHARE = 0.10
REPORT_ID_MISMATCH_SHARE = 0.005
REPORT_STRING_ID_SHARE = 0.10
REPORT_PUBLICATION_SHARE = 0.20

YEAR_START = int(dt.datetime(2021, 1, 1, tzinfo=dt.UTC).timestamp())
YEAR_SECONDS = 365 * 86_400
# Increments (generate_increment) are published in the 30 days after the latest base record
# (base re-deliveries reach at most 20 days into 2022).
INCREMENT_START = int(dt.datetime(2022, 1, 25, tzinfo=dt.UTC).timestamp())
INCREMENT_SECONDS = 30 * 86_400
INCREMENT_REDELIVERY_SHARE = 0.10
REDELIVERY_DELAY_SECONDS = (3_600, 20 * 86_400)

SOURCES = ("hospital ABC", "first institute", "clinica sao lucas")
BODY_PARTS: tuple[tuple[str, str, int], ...] = (
    # (spelling, canonical, weight)
    ("CHEST", "chest", 20),
    ("Chest", "chest", 10),
    ("chest", "chest", 6),
    ("BREAST", "breast", 18),
    ("Breast", "breast", 4),
    ("ABDOMEN", "abdomen", 6),
    ("LOW_EXM", "low_exm", 7),
    ("UP_EXM", "up_exm", 6),
    ("PELVIS", "pelvis", 3),
    ("LSPINE", "lspine", 3),
    ("CSPINE", "cspine", 2),
    ("KNEE", "knee", 2),
    ("Knee", "knee", 1),
    ("SHOULDER", "shoulder", 2),
    ("HAND", "hand", 2),
    ("FOOT", "foot", 1),
)
CHEST_SPELLINGS = ("CHEST", "Chest", "chest")
CLASSIFICATIONS: tuple[tuple[str, str, int], ...] = (
    ("covid19", "covid", 10),
    ("Covid19", "covid", 4),
    ("COVID-19", "covid", 3),
    ("covid", "covid", 2),
    ("pneumonia", "pneumonia", 8),
    ("Pneumonia", "pneumonia", 4),
    ("hernia", "hernia", 6),
    ("Hernia", "hernia", 2),
    ("edema", "edema", 7),
    ("Edema", "edema", 1),
    ("mass", "mass", 7),
    ("tumor", "tumor", 7),
    ("Nodule", "nodule", 3),
    ("nodule", "nodule", 2),
    ("effusion", "effusion", 3),
)
# Label value spellings: (value as delivered, is positive, weight).
VALUES: tuple[tuple[Any, bool, int], ...] = (
    (True, True, 30),
    (False, False, 30),
    ("True", True, 10),
    ("False", False, 10),
    ("true", True, 10),
    ("false", False, 10),
)
LABEL_COUNT_WEIGHTS = (3, 5, 10, 15, 20, 18, 14, 9, 6)  # 0..8 labels, mean about 4.5
# Exams per file, 1..4 with mean 2: a 1 M-exam delivery is about 500 k exam files, like real ones.
FILE_SIZE_WEIGHTS = (4, 3, 2, 1)
LABELLERS = (
    "Mariana Nascimento",
    "Enrico Farias",
    "Emanuella Monteiro",
    "Pietra Campos",
    "Fernando Nunes",
    "Luiz Henrique Costa",
    "Ana Beatriz Rocha",
    "Joao Pedro Lima",
)
_REPORT_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua opacity consolidation effusion normal heart size clear lungs no acute findings"
)
WORDS = tuple(_REPORT_TEXT.split(" "))

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
# A fixed 2.25 (UUID-derived) implementation UID, so files do not depend on the pydicom version.
IMPLEMENTATION_CLASS_UID = "2.25.1883212457397462231012830129430913497"


def uid_for(seed: int, key: str) -> str:
    """A DICOM UID under the 2.25 (UUID-derived) root, deterministic in (seed, key)."""
    digest = hashlib.sha256(f"medlake-synth:{seed}:{key}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _file_name(kind: str, seed: int, block: int, index: int) -> str:
    digest = hashlib.sha256(f"medlake-synth-file:{kind}:{seed}:{block}:{index}".encode()).digest()
    return f"{uuid.UUID(bytes=digest[:16], version=4)}.json"


def _identity(identity_seed: int, exam_id: int, dicom: bool) -> tuple[Any, Any, str, str, str, str]:
    """What stays the same each time an exam is delivered: id spelling, source, dataset, body part, image.

    Drawn from a hash of (identity seed, exam id), not from the block's random stream, so a
    re-delivery, even in a later increment generated separately, repeats them exactly.
    """
    h = hashlib.blake2b(f"medlake-synth-exam:{identity_seed}:{exam_id}".encode(), digest_size=16).digest()
    exam_id_value: Any = str(exam_id) if h[0] < STRING_ID_SHARE * 256 else exam_id
    source = SOURCES[h[1] % len(SOURCES)]
    source_value: Any = [source] if h[2] < SOURCE_AS_LIST_SHARE * 256 else source
    dataset_type = "private" if h[3] < 0.9 * 256 else "public"
    dataset = "batch" if h[4] < 0.8 * 256 else "stream"
    if dicom:
        body_part = CHEST_SPELLINGS[h[5] % len(CHEST_SPELLINGS)]
    else:
        body_part = _BODY_TABLE[int.from_bytes(h[6:10], "big") % len(_BODY_TABLE)][0]
    sop_uid = uid_for(identity_seed, f"exam:{exam_id}:sop")
    image_path = f"{IMAGE_URI_PREFIX}/{_CANONICAL_BODY[body_part]}/{sop_uid}.dcm"
    return exam_id_value, source_value, dataset_type, dataset, body_part, image_path


def _expanded(table: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Any, ...], ...]:
    """A weighted table as a flat tuple with each row repeated ``weight`` times.

    Picking ``flat[int(random() * len(flat))]`` is one random draw and one index, several
    times cheaper than ``random.choices`` with weights; it matters at millions of labels.
    """
    return tuple(row[:-1] for row in table for _ in range(row[-1]))


_BODY_TABLE = _expanded(BODY_PARTS)
_CLASS_TABLE = _expanded(CLASSIFICATIONS)
_VALUE_TABLE = _expanded(VALUES)
_LABEL_COUNT_TABLE = tuple(count for count, weight in enumerate(LABEL_COUNT_WEIGHTS) for _ in range(weight))
_FILE_SIZE_TABLE = tuple(size for size, weight in enumerate(FILE_SIZE_WEIGHTS, start=1) for _ in range(weight))
_DAY_ZERO = YEAR_START - 800 * 86_400
# "YYYY-MM-DD" of each day from _DAY_ZERO on: labelled/report dates by table lookup.
_DAY_TEXT = tuple(
    dt.datetime.fromtimestamp(_DAY_ZERO + day * 86_400, dt.UTC).date().isoformat() for day in range(1_400)
)
# Report sentences, generated once from a fixed stream (reports differ by which ones they pick).
_SENTENCES = tuple(
    " ".join(random.Random(f"sentence:{i}").choices(WORDS, k=4 + i % 7)).capitalize() + "." for i in range(512)
)


def _day_text(timestamp: float) -> str:
    return _DAY_TEXT[int(timestamp - _DAY_ZERO) // 86_400]


_CANONICAL_CLASS = {spelling: canonical for spelling, canonical, _ in CLASSIFICATIONS}
_CANONICAL_BODY = {spelling: canonical for spelling, canonical, _ in BODY_PARTS}
_POSITIVE_VALUES = {"true", "True"}


def _is_positive(value: Any) -> bool:
    return value is True or value in _POSITIVE_VALUES


# --- one block --------------------------------------------------------------------


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

    @property
    def kind(self) -> str:
        return "increment" if self.base_exams else "base"


@dataclass
class _BlockStats:
    counts: Counter[str] = field(default_factory=Counter)
    covid_without_pneumonia: Counter[str] = field(default_factory=Counter)
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (path under out, bytes) to create


def _redeliveries(records: int, share: float = REDELIVERY_SHARE) -> int:
    return 0 if records < 5 else max(1, round(records * share))


class _BlockWriter:
    """Generates and writes one block of the delivery."""

    def __init__(self, spec: _BlockSpec) -> None:
        self.spec = spec
        self.rng = random.Random(f"medlake-synth:{spec.seed}:{spec.block}")
        self.random = self.rng.random
        self.stats = _BlockStats()
        self.out = Path(spec.out)
        self.file_index = 0
        self.bad_block = spec.block == 0 or self.rng.random() < BAD_BLOCK_SHARE
        self.forced_layouts = {"json_lines", "object"} if spec.block == 0 else set()

    # -- records --

    def _timestamp(self) -> float:
        if self.spec.base_exams:  # an increment comes after everything its base delivered
            return round(INCREMENT_START + self.rng.random() * INCREMENT_SECONDS, 6)
        return round(YEAR_START + self.rng.random() * YEAR_SECONDS, 6)

    def _pick(self, table: tuple[Any, ...]) -> Any:
        return table[int(self.random() * len(table))]

    def _labels(self, published: float, allow_covid: bool) -> list[dict[str, Any]]:
        rand, pick = self.random, self._pick
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

    def _exam(self, exam_id: int, *, with_id: bool, dicom: bool, published: float) -> dict[str, Any]:
        rand, pick = self.random, self._pick
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
            content["labels"] = self._labels(published, allow_covid=with_id)
        if not dicom and rand() < MISSING_FIELD_SHARE * 4:
            del content[pick(("source", "dataset_type", "dataset", "body_part", "image_path"))]
        return {"content": content, "publication_timestamp": published}

    def _report(self, exam: dict[str, Any]) -> dict[str, Any]:
        rand, pick = self.random, self._pick
        exam_id = exam["content"].get("id")
        content: dict[str, Any] = {}
        if exam_id is not None:
            number = int(exam_id)
            if rand() < REPORT_ID_MISMATCH_SHARE:
                number += 1  # the real sample's off-by-one, for the data-quality finding
                self.stats.counts["report_exam_id_mismatches"] += 1
            content["exam_id"] = str(number) if rand() < REPORT_STRING_ID_SHARE else number
        reported = exam["publication_timestamp"] + rand() * 5 * 86_400
        content["report_date"] = _day_text(reported)
        content["reported_by"] = pick(LABELLERS)
        content["text"] = " ".join(pick(_SENTENCES) for _ in range(1 + int(rand() * 3)))
        report: dict[str, Any] = {"content": content}
        if rand() < REPORT_PUBLICATION_SHARE:
            report["publication_timestamp"] = round(reported, 6)
        return report

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
            records.append({"publication_timestamp": self._timestamp(), "contents": {"id": "misspelled key"}})
            self.stats.counts["records_without_content"] += 1
        name = self._next_name()
        self._write("exam", name, self._encode(records, layout))
        self._write("medical_report", name, self._encode([self._report(exam) for exam in exams], layout))
        self.stats.counts["report_records"] += len(exams)
        self.stats.counts[f"{layout}_files"] += 1

    def _pack(self, exams: list[dict[str, Any]], inject_bad_record: bool) -> None:
        """Write exams into files of 1-4 records (the real sample's sizes)."""
        start = 0
        while start < len(exams):
            size = _FILE_SIZE_TABLE[int(self.random() * len(_FILE_SIZE_TABLE))]
            chunk = exams[start : start + size]
            start += size
            extra = inject_bad_record and len(chunk) < 4
            self._write_exam_file(chunk, extra_bad_record=extra)
            inject_bad_record = inject_bad_record and not extra

    def _write_bad_files(self) -> None:
        published = self._timestamp()
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
            exam = self._exam(exam_id, with_id=with_id, dicom=dicom, published=self._timestamp())
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
                published = self._timestamp()
            else:
                exam_id = rng.choice(candidates)
                dicom = exam_id <= spec.first_slot + spec.dicom_originals
                delay = rng.uniform(*REDELIVERY_DELAY_SECONDS)
                published = round(latest[exam_id]["publication_timestamp"] + delay, 6)
            again = self._exam(exam_id, with_id=True, dicom=dicom, published=published)
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


def write_chest_cr(
    path: Path,
    *,
    seed: int,
    exam_id: int,
    sop_instance_uid: str,
    study_instance_uid: str,
    series_instance_uid: str,
    published: float,
    rows: int = 320,
    columns: int = 256,
) -> None:
    """Write a synthetic chest CR (PA) as a valid DICOM Part 10 file, explicit VR little endian.

    Small by default (320x256, so deliveries stay light); benchmarks ask for detector-sized ones.

    The picture is a bright body ellipse with two darker "lungs" and a spine, plus seeded
    noise: 12 bits stored in 16 (values <= 4095, as TorchXRayVision's normaliser requires).
    Every fourth exam is MONOCHROME1 (inverted), like many real CRs.
    """
    import numpy as np  # only when images are asked for
    from pydicom.dataset import FileDataset, FileMetaDataset

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}:{exam_id}:pixels".encode()).digest()[:8]))
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cy, cx = rows / 2, columns / 2

    def ellipse(center_y: float, center_x: float, radius_y: float, radius_x: float) -> np.ndarray:
        return (((y - center_y) / radius_y) ** 2 + ((x - center_x) / radius_x) ** 2) <= 1.0

    image = np.full((rows, columns), 300.0, dtype=np.float32)
    image[ellipse(cy, cx, rows * 0.46, columns * 0.45)] = 2600.0
    lung_shift = float(rng.uniform(-6, 6))
    image[ellipse(cy - 10 + lung_shift, cx - columns * 0.2, rows * 0.3, columns * 0.14)] = 900.0
    image[ellipse(cy - 10 - lung_shift, cx + columns * 0.2, rows * 0.3, columns * 0.14)] = 900.0
    image[:, int(cx - 8) : int(cx + 8)] += 700.0 * (np.abs(y[:, int(cx - 8) : int(cx + 8)] - cy) < rows * 0.42)
    image += 600.0 * (1.0 - y / rows)  # soft vertical gradient
    image += rng.normal(0.0, 60.0, size=image.shape).astype(np.float32)
    pixels = np.clip(image, 0, 4095).astype(np.uint16)
    monochrome1 = exam_id % 4 == 0
    if monochrome1:
        pixels = (4095 - pixels).astype(np.uint16)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "MEDLAKE_SYNTH_1"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    when = dt.datetime.fromtimestamp(published, dt.UTC)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AccessionNumber = f"SYN{exam_id:010d}"
    ds.Modality = "CR"
    ds.Manufacturer = "medlake synth"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic chest PA"
    ds.PatientName = f"Synthetic^Exam{exam_id}"
    ds.PatientID = f"SYNPAT{exam_id:010d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "F" if exam_id % 2 else "M"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = str(exam_id)[-16:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _write_block(spec: _BlockSpec) -> _BlockStats:
    # Only acyclic dicts and lists are made here: the cyclic collector would just re-walk them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _BlockWriter(spec).run()
    finally:
        if gc_was_enabled:
            gc.enable()


# --- the run -----------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSummary:
    """What ``medlake synth`` wrote, and the ground truth a landing of it must reproduce."""

    out: str
    seed: int
    exam_records: int  # landable exam records (originals + re-deliveries) == exams landed
    distinct_exam_ids: int
    exams_without_id: int
    redelivered_records: int
    report_records: int
    report_exam_id_mismatches: int
    exam_files: int
    report_files: int
    dicom_files: int
    json_lines_files: int
    single_object_files: int
    empty_files: int
    whitespace_files: int
    invalid_json_files: int  # quarantined whole (record_position NULL)
    records_without_content: int  # quarantined with their position
    label_not_object: int  # label elements quarantined as exam_label (their exams land)
    label_objects: int  # label objects in all landable records == exam_labels rows landed
    label_objects_latest: int
    chest_exams_with_6plus_labels: int
    covid_without_pneumonia_by_month: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def quarantine_rows_expected(self) -> int:
        return self.invalid_json_files + self.records_without_content + self.label_not_object

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["covid_without_pneumonia_by_month"] = dict(sorted(self.covid_without_pneumonia_by_month.items()))
        data["quarantine_rows_expected"] = self.quarantine_rows_expected
        data["seconds"] = round(self.seconds, 3)
        return data

    def ground_truth(self) -> dict[str, Any]:
        """to_dict() without the wall time: what ``synth_summary.json`` holds (same seed, same bytes)."""
        data = self.to_dict()
        del data["seconds"], data["out"]
        return data

    def render(self) -> str:
        rows = [
            ("exam records (landable)", self.exam_records),
            ("  distinct exam ids", self.distinct_exam_ids),
            ("  re-delivered records", self.redelivered_records),
            ("  without id", self.exams_without_id),
            ("report records", self.report_records),
            ("exam files", self.exam_files),
            ("report files", self.report_files),
            ("DICOM files (images/)", self.dicom_files),
            ("JSON-lines / single-object files", f"{self.json_lines_files} / {self.single_object_files}"),
            ("empty / whitespace-only files", f"{self.empty_files} / {self.whitespace_files}"),
            ("injected: invalid JSON files", self.invalid_json_files),
            ("injected: records without content", self.records_without_content),
            ("injected: label elements not objects", self.label_not_object),
            ("quarantine rows expected", self.quarantine_rows_expected),
        ]
        lines = [f"synth seed={self.seed} -> {self.out}"]
        lines += [f"  {name:<36} {value:>10}" for name, value in rows]
        december = self.covid_without_pneumonia_by_month.get("2021-12", 0)
        lines.append(f"  {'covid w/o pneumonia, 2021-12 (exam)':<36} {december:>10}")
        lines.append(f"  took {self.seconds:.2f} s")
        return "\n".join(lines)


def _generate_blocks(specs: list[_BlockSpec], workers: int) -> Iterator[_BlockStats]:
    """Each block's stats and file bytes, in block order; generated by worker processes when it pays.

    At most a few blocks per worker are in flight, so memory stays flat however many exams.
    """
    if workers <= 1 or len(specs) <= 2:
        yield from map(_write_block, specs)
        return
    methods = multiprocessing.get_all_start_methods()
    in_flight: deque[Future[_BlockStats]] = deque()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(specs)),
        mp_context=multiprocessing.get_context("fork") if "fork" in methods else None,
    ) as pool:
        pending = iter(specs)
        try:
            for spec in itertools.islice(pending, 4 * workers):
                in_flight.append(pool.submit(_write_block, spec))
            while in_flight:
                stats = in_flight.popleft().result()
                for spec in itertools.islice(pending, 1):
                    in_flight.append(pool.submit(_write_block, spec))
                yield stats
        finally:
            for future in in_flight:
                future.cancel()


def _create_files(out: Path, files: list[tuple[str, bytes]]) -> None:
    """Create a block's JSON files. One process creates all of them: two processes creating files
    in one ext4 directory contend on its lock (on the dev VM, 200 k exams took 24 s with two writers
    and 8 s with one), while generating the bytes is the part that parallelises well."""
    root = str(out)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        for relpath, data in files:
            fd = os.open(f"{root}/{relpath}", flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    except OSError as exc:
        raise SynthError(f"cannot write to {out}: {exc.strerror or exc}") from exc


def _plan(
    out: Path,
    exams: int,
    seed: int,
    dicom_exams: int,
    *,
    identity_seed: int,
    base_exams: int = 0,
    base_dicom_exams: int = 0,
) -> list[_BlockSpec]:
    specs = []
    dicom_left = dicom_exams
    share = INCREMENT_REDELIVERY_SHARE if base_exams else REDELIVERY_SHARE
    for block, offset in enumerate(range(0, exams, BLOCK_EXAMS)):
        records = min(BLOCK_EXAMS, exams - offset)
        redeliveries = _redeliveries(records, share)
        dicom_here = min(dicom_left, records - redeliveries)
        dicom_left -= dicom_here
        specs.append(
            _BlockSpec(
                str(out),
                seed,
                block,
                base_exams + offset,
                records,
                redeliveries,
                dicom_here,
                identity_seed,
                base_exams,
                base_dicom_exams,
            )
        )
    return specs


def _prepare_out(out: Path) -> None:
    """Create ``out``; an earlier synth output there is replaced, anything else is refused."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"output path exists and is not a directory: {out}")
    if out.exists() and any(out.iterdir()):
        if not (out / SUMMARY_FILE).is_file():
            raise SynthError(f"output directory {out} is not empty and was not written by medlake synth; pick another")
        for name in ("exam", "medical_report", "images", SUMMARY_FILE):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        for name in ("exam", "medical_report", "images"):
            (out / name).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SynthError(f"cannot write to {out}: {exc.strerror or exc}") from exc


def generate(
    out: Path,
    *,
    exams: int,
    seed: int = 42,
    dicom_exams: int | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> SynthSummary:
    """Write a synthetic delivery of ``exams`` landable exam records to ``out``."""
    if exams < 1:
        raise SynthError(f"exams must be >= 1, got {exams}")
    dicom_exams = min(DEFAULT_DICOM_EXAMS, exams) if dicom_exams is None else dicom_exams
    if dicom_exams < 0:
        raise SynthError(f"dicom_exams must be >= 0, got {dicom_exams}")
    specs = _plan(Path(out), exams, seed, dicom_exams, identity_seed=seed)
    return _generate(Path(out), specs, seed=seed, progress=progress, workers=workers)


def generate_increment(
    out: Path,
    *,
    exams: int,
    seed: int,
    base_exams: int,
    base_seed: int | None = None,
    base_dicom_exams: int | None = None,
    dicom_exams: int = 0,
    progress: bool = False,
    workers: int | None = None,
) -> SynthSummary:
    """Write a later delivery on top of a base written by ``generate(exams=base_exams, seed=base_seed)``.

    ``exams`` landable records: new exams (ids after ``base_exams``) and 10% re-deliveries of
    base exam ids with new labels, all published in the 30 days after anything in the base.
    With the base's seed (``base_seed``), re-delivered exams keep their id spelling, source,
    body part and image path exactly; without it they are only the same ids. File names never
    collide with the base's. ``base_dicom_exams`` defaults like ``generate``'s ``dicom_exams``.
    """
    if exams < 1 or base_exams < 1:
        raise SynthError(f"exams and base_exams must be >= 1, got {exams} and {base_exams}")
    if dicom_exams < 0:
        raise SynthError(f"dicom_exams must be >= 0, got {dicom_exams}")
    base_dicom = min(DEFAULT_DICOM_EXAMS, base_exams) if base_dicom_exams is None else base_dicom_exams
    identity_seed = seed if base_seed is None else base_seed
    specs = _plan(
        Path(out),
        exams,
        seed,
        dicom_exams,
        identity_seed=identity_seed,
        base_exams=base_exams,
        base_dicom_exams=base_dicom,
    )
    return _generate(Path(out), specs, seed=seed, progress=progress, workers=workers)


def _generate(out: Path, specs: list[_BlockSpec], *, seed: int, progress: bool, workers: int | None) -> SynthSummary:
    from tqdm import tqdm

    started = time.perf_counter()
    exams = sum(spec.records for spec in specs)
    _prepare_out(out)
    workers = workers or os.cpu_count() or 1
    counts: Counter[str] = Counter()
    months: Counter[str] = Counter()
    with tqdm(total=exams, unit="exam", desc="synth", disable=not progress, mininterval=0.5) as bar:
        for spec, stats in zip(specs, _generate_blocks(specs, workers), strict=True):
            _create_files(out, stats.files)
            counts.update(stats.counts)
            months.update(stats.covid_without_pneumonia)
            bar.update(spec.records)
    summary = SynthSummary(
        out=str(out),
        seed=seed,
        exam_records=counts["exam_records"],
        distinct_exam_ids=counts["distinct_exam_ids"],
        exams_without_id=counts["exams_without_id"],
        redelivered_records=counts["redelivered_records"],
        report_records=counts["report_records"],
        report_exam_id_mismatches=counts["report_exam_id_mismatches"],
        exam_files=counts["exam_files"],
        report_files=counts["medical_report_files"],
        dicom_files=counts["images_files"],
        json_lines_files=counts["json_lines_files"],
        single_object_files=counts["object_files"],
        empty_files=counts["empty_files"],
        whitespace_files=counts["whitespace_files"],
        invalid_json_files=counts["invalid_json_files"],
        records_without_content=counts["records_without_content"],
        label_not_object=counts["label_not_object"],
        label_objects=counts["label_objects"],
        label_objects_latest=counts["label_objects_latest"],
        chest_exams_with_6plus_labels=counts["chest_exams_with_6plus_labels"],
        covid_without_pneumonia_by_month=dict(sorted(months.items())),
        seconds=time.perf_counter() - started,
    )
    (out / SUMMARY_FILE).write_bytes(orjson.dumps(summary.ground_truth(), option=orjson.OPT_INDENT_2) + b"\n")
    return summary
