"""What a data scientist asks of an export: the label columns and the filters on exams."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from medlake.errors import DatasetError


@dataclass(frozen=True)
class ExportFilters:
    """The exams (and label columns) of one export. Empty filters select everything."""

    labels: tuple[str, ...] = ()  # the label columns; empty: every label the lake has assertions of
    body_part: str | None = None  # canonical body part, case-insensitive (Chest)
    published_from: dt.date | None = None  # inclusive, UTC
    published_to: dt.date | None = None  # inclusive, UTC
    sources: tuple[str, ...] = ()  # exam sources, case-insensitive
    require_image: bool = False  # only exams whose image is in the lake's object store or the PACS
    with_predictions: str | None = None  # only images this model scored; adds pred_<label> columns
    include_unlabelled: bool = False  # also exams with no assertion on any of the labels

    def __post_init__(self) -> None:
        if self.published_from and self.published_to and self.published_from > self.published_to:
            raise DatasetError(f"--published-from {self.published_from} is after --published-to {self.published_to}")

    @staticmethod
    def split_list(text: str | None) -> tuple[str, ...]:
        """``"Covid, Pneumonia"`` -> ("Covid", "Pneumonia"): comma-separated, blanks dropped, order kept."""
        if not text:
            return ()
        items = [item.strip() for item in text.split(",")]
        return tuple(dict.fromkeys(item for item in items if item))

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "body_part": self.body_part,
            "published_from": self.published_from.isoformat() if self.published_from else None,
            "published_to": self.published_to.isoformat() if self.published_to else None,
            "sources": list(self.sources),
            "require_image": self.require_image,
            "with_predictions": self.with_predictions,
            "include_unlabelled": self.include_unlabelled,
        }
