"""Leak-free train/val/test splits: by patient, stable when the lake grows.

Each exam's *group* is its pseudonymous patient key, or ``exam:<exam_key>`` when the patient is
unknown (no DICOM header names one). A group's split depends on nothing but the group and the
seed::

    u = int(sha256(f"{seed}:{group}").hexdigest()[:13], 16) / 16**13      # uniform in [0, 1)
    split = "train" if u < train else "val" if u < train + val else "test"

So every exam of a patient lands in the same split, the same seed gives the same split on every
export, and exams added later never move an existing patient (no shuffle of the current set).
The SQL in :func:`split_sql` and :func:`split_of` are the same function; a test holds them equal.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum

from medlake.errors import DatasetError

_HEX_DIGITS = 13  # 52 bits: exact in a double, so SQL and Python agree on every boundary
_SCALE = 16**_HEX_DIGITS


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


@dataclass(frozen=True)
class SplitSpec:
    """Shares of train/val/test (summing to 1) and the seed of the assignment."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> SplitSpec:
        """``"0.8,0.1,0.1"`` -> SplitSpec; a clear error for anything else."""
        try:
            shares = [float(part) for part in text.split(",")]
        except ValueError:
            raise DatasetError(f"--split expects three numbers like 0.8,0.1,0.1, got {text!r}") from None
        if len(shares) != 3 or any(share < 0 or not math.isfinite(share) for share in shares):
            raise DatasetError(f"--split expects three non-negative shares (train,val,test), got {text!r}")
        if abs(sum(shares) - 1.0) > 1e-6:
            raise DatasetError(f"--split shares must sum to 1, got {text!r} (sum {sum(shares):g})")
        return cls(*shares, seed=seed)

    def as_text(self) -> str:
        return f"{self.train:g},{self.val:g},{self.test:g}"


def uniform_of(group: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()
    return int(digest[:_HEX_DIGITS], 16) / _SCALE


def split_of(group: str, spec: SplitSpec) -> Split:
    """The split of one group (patient key, or ``exam:<exam_key>``): the reference implementation."""
    u = uniform_of(group, spec.seed)
    if u < spec.train:
        return Split.TRAIN
    if u < spec.train + spec.val:
        return Split.VAL
    return Split.TEST


def split_sql(group_expression: str, spec: SplitSpec) -> str:
    """A DuckDB expression computing :func:`split_of` of ``group_expression`` (seed and shares inlined)."""
    u = (
        f"(cast(('0x' || left(sha256('{int(spec.seed)}:' || {group_expression}), {_HEX_DIGITS})) as bigint)"
        f" / {_SCALE}.0)"
    )
    return (
        f"case when {u} < {spec.train!r} then '{Split.TRAIN}' "
        f"when {u} < {spec.train + spec.val!r} then '{Split.VAL}' else '{Split.TEST}' end"
    )
