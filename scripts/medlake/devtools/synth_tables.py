"""The synthetic delivery's vocabulary: shares, spellings, weighted tables, and what an exam always is.

Every constant that shapes ``medlake synth``'s output lives here, with the two helpers that
must agree between generating an exam and counting the expected answers (:func:`_identity`,
:func:`_is_positive`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import uuid
from typing import Any

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
