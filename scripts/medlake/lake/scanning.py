"""``medlake scan-dicom``: index every file under a directory, DICOM headers included.

The same code path as ``land``'s ``images/`` (``landing.land_tasks``), over a whole tree:
re-running adds nothing, unreadable DICOMs are quarantined, the symlink policy applies.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlake.errors import LandingError
from medlake.lake import landing
from medlake.lake.files import DeliveryRoot


@dataclass(frozen=True)
class ScanSummary:
    """What ``medlake scan-dicom`` did."""

    input_dir: str
    lake: str
    delivery_date: str
    files_seen: int
    files_landed: int
    files_skipped: int
    dicom_instances: int
    media_types: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    ignored_entries: tuple[str, ...] = ()  # FIFOs, sockets, devices: listed, never read
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_dir": self.input_dir,
            "lake": self.lake,
            "delivery_date": self.delivery_date,
            "files_seen": self.files_seen,
            "files_landed": self.files_landed,
            "files_skipped_already_landed": self.files_skipped,
            "dicom_instances": self.dicom_instances,
            "media_types": dict(sorted(self.media_types.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "ignored_entries": list(self.ignored_entries),
            "seconds": round(self.seconds, 3),
        }

    def render(self) -> str:
        lines = [
            f"scan-dicom {self.input_dir} -> {self.lake} (delivery_date={self.delivery_date})",
            f"  files seen       {self.files_seen:>8}",
            f"  files landed     {self.files_landed:>8}",
            f"  already landed   {self.files_skipped:>8}  (skipped: same path and sha256 in the manifest)",
            f"  DICOM instances  {self.dicom_instances:>8}",
        ]
        for media_type, count in sorted(self.media_types.items()):
            lines.append(f"  media {media_type:<28} {count:>6}")
        if self.quarantined:
            for reason_code, count in sorted(self.quarantined.items()):
                lines.append(f"  quarantined {reason_code:<22} {count:>6}")
        else:
            lines.append("  quarantined             0")
        if self.ignored_entries:
            lines.append(f"  ignored (not regular files): {', '.join(self.ignored_entries)}")
        lines.append(f"  took {self.seconds:.2f} s")
        return "\n".join(lines)


def scan_directory(input_dir: Path, lake: Path, *, delivery_date: dt.date | None, progress: bool = True) -> ScanSummary:
    """Index every file under ``input_dir`` (recursive) into image_files, and DICOM headers into
    dicom_instances, through the same code path as ``land``'s ``images/``. Re-running adds nothing."""
    started = time.perf_counter()
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise LandingError(f"input directory not found: {input_dir}")
    listing = DeliveryRoot(input_dir).walk()
    relpaths = listing.files
    result = landing.land_tasks(
        input_dir, Path(lake), {landing.IMAGE: relpaths}, delivery_date=delivery_date, workers=None, progress=progress
    )
    return ScanSummary(
        input_dir=str(input_dir),
        lake=str(lake),
        delivery_date=result.delivery_date.isoformat(),
        files_seen=len(relpaths),
        files_landed=result.files_landed.get(landing.IMAGE, 0),
        files_skipped=result.files_skipped.get(landing.IMAGE, 0),
        dicom_instances=result.rows.get("dicom_instances", 0),
        media_types=dict(result.media_types),
        quarantined=dict(result.quarantined),
        ignored_entries=tuple(listing.not_files),
        seconds=time.perf_counter() - started,
    )
