"""What ``medlake land`` reports: :class:`LandingSummary` (rendered as a table or JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medlake.vocab import Entity


@dataclass(frozen=True)
class LandingSummary:
    """What ``medlake land`` did: files seen / landed / skipped, rows per table, quarantine by reason."""

    input_dir: str
    lake: str
    delivery_date: str
    files_seen: dict[str, int]
    files_landed: dict[str, int]
    files_skipped: dict[str, int]
    ignored_entries: tuple[str, ...]
    rows_landed: dict[str, int]
    records_quarantined: dict[str, int]
    quarantined: dict[str, int]
    media_types: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    parts_written: int = 0
    orphan_parts_removed: int = 0
    workers: int = 1
    seconds: float = 0.0

    @property
    def records_landed(self) -> int:
        return self.rows_landed.get("exams", 0) + self.rows_landed.get("medical_reports", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_dir": self.input_dir,
            "lake": self.lake,
            "delivery_date": self.delivery_date,
            "files_seen": dict(self.files_seen),
            "files_landed": dict(self.files_landed),
            "files_skipped_already_landed": dict(self.files_skipped),
            "ignored_entries": list(self.ignored_entries),
            "rows_landed": dict(self.rows_landed),
            "records_quarantined": dict(self.records_quarantined),
            "quarantined_by_reason": dict(self.quarantined),
            "media_types": dict(self.media_types),
            "batches": self.batches,
            "parts_written": self.parts_written,
            "orphan_parts_removed": self.orphan_parts_removed,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_landed / self.seconds) if self.seconds > 0 else None,
        }

    def render(self) -> str:
        lines = [f"land {self.input_dir} -> {self.lake} (delivery_date={self.delivery_date})"]
        lines.append(f"  {'files':<16} {'seen':>9} {'landed':>9} {'skipped':>9}   (skipped = already landed)")
        for entity in (Entity.EXAM, Entity.MEDICAL_REPORT, Entity.IMAGE):
            if entity in self.files_seen:
                lines.append(
                    f"  {entity:<16} {self.files_seen[entity]:>9} {self.files_landed.get(entity, 0):>9} "
                    f"{self.files_skipped.get(entity, 0):>9}"
                )
        if self.ignored_entries:
            shown = ", ".join(self.ignored_entries[:5]) + (", ..." if len(self.ignored_entries) > 5 else "")
            lines.append(
                f"  ignored (outside exam/, medical_report/, images/, or not a regular file): "
                f"{len(self.ignored_entries)}: {shown}"
            )
        lines.append("  rows landed")
        for table in ("exams", "exam_labels", "medical_reports", "image_files", "dicom_instances"):
            if table in self.rows_landed or (table in ("exams", "exam_labels", "medical_reports")):
                lines.append(f"    {table:<22} {self.rows_landed.get(table, 0):>10}")
        total_quarantined = sum(self.quarantined.values())
        lines.append(f"  quarantined rows         {total_quarantined:>10}")
        for reason_code, count in sorted(self.quarantined.items()):
            lines.append(f"    {reason_code:<22} {count:>10}")
        for media_type, count in sorted(self.media_types.items()):
            lines.append(f"  media {media_type:<26} {count:>6}")
        if self.orphan_parts_removed:
            lines.append(f"  removed {self.orphan_parts_removed} part files left by an interrupted landing")
        rate = f", {self.records_landed / self.seconds:,.0f} records/s" if self.seconds > 0 else ""
        lines.append(
            f"  {self.batches} batches, {self.parts_written} part files, {self.workers} workers, "
            f"{self.seconds:.2f} s{rate}"
        )
        return "\n".join(lines)
