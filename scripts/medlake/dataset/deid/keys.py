"""The keyed parts of de-identification: replacement UIDs, per-patient date offsets, the subject.

All are HMAC-SHA-256 with secrets derived from the lake's pseudonymisation key, so they are the
same in every file, worker and export of one lake (studies still group, a later export agrees with
an earlier one) and cannot be recomputed without the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

# Offsets are whole days into the past, between one and about ten years: time of day and weekday
# survive only modulo the offset, intervals between a patient's studies survive exactly.
MIN_OFFSET_DAYS, MAX_OFFSET_DAYS = 365, 3652


def _derive(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"medlake-deid-v2\x00" + purpose, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a file belongs to, as the export says it: the pseudonym and that patient's date offset."""

    patient_key: str  # the lake's keyed pseudonym (or "exam:<key>" when no patient is known)
    date_offset_days: int


class Keys:
    """The secrets of one lake's de-identification (picklable: plain bytes)."""

    def __init__(self, pseudonym_key: bytes) -> None:
        self._pseudonym_key = pseudonym_key
        self._uid_key = _derive(pseudonym_key, b"uid")
        self._date_key = _derive(pseudonym_key, b"date-offset")

    @property
    def pseudonym_key(self) -> bytes:
        return self._pseudonym_key

    def uid(self, original: str) -> str:
        """A UUID-derived UID (2.25.<128-bit integer>) for ``original``: same input, same output."""
        digest = hmac.new(self._uid_key, original.strip().encode(), hashlib.sha256).digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def date_offset_days(self, group: str) -> int:
        """The offset (negative days) of one patient (its pseudonym) or exam group: never zero."""
        digest = hmac.new(self._date_key, group.encode(), hashlib.sha256).digest()
        span = MAX_OFFSET_DAYS - MIN_OFFSET_DAYS + 1
        return -(MIN_OFFSET_DAYS + int.from_bytes(digest[:8], "big") % span)

    def subject(self, patient_key: str) -> Subject:
        return Subject(patient_key, self.date_offset_days(patient_key))


def shift_date(text: str, days: int) -> str | None:
    """A DA value (YYYYMMDD) moved by ``days``; None when it is not a full date (then it is emptied)."""
    text = text.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return (dt.date(int(text[:4]), int(text[4:6]), int(text[6:])) + dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return None


def shift_datetime(text: str, days: int) -> str | None:
    """A DT value moved by ``days`` (its date part; time and offset kept); None when unreadable."""
    text = text.strip()
    shifted = shift_date(text[:8], days)
    return None if shifted is None else shifted + text[8:]
