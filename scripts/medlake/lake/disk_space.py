"""Free-space checks before ``land`` and ``build`` write anything (issue 19 item 4).

A full disk halfway through a landing or a build leaves a user with a half-written part or a dead
build file and no idea how much space was missing. So each checks first, against an estimate of
what it is about to write, plus a margin it always leaves free (``MEDLAKE_MIN_FREE_DISK_MB``,
default 512 MB), and refuses in one line before starting:

* ``land``: the raw Parquet is about a tenth of the JSON it comes from (zstd; measured on the
  synthetic and real deliveries); a fifth is assumed. The JSON size is the mean of up to
  2,000 evenly spaced files times the count, so 5 M small files cost 2,000 ``stat`` calls, not 5 M.
  Image files are hard-linked into the object store when the delivery is on the lake's filesystem
  (no space), else copied (their full size).
* ``build`` (DuckDB): an incremental build copies the live warehouse and grows the copy, so the
  warehouse is on disk twice for a moment (its size plus a tenth); a full build writes a new one
  beside the live one (the live one's size, or about eight times the raw Parquet when there is none:
  report texts and labels are stored unpacked for fast reads).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from medlake.errors import DiskSpaceError

MIN_FREE_VARIABLE = "MEDLAKE_MIN_FREE_DISK_MB"
DEFAULT_MIN_FREE_MB = 512
PARQUET_PER_JSON = 0.2
WAREHOUSE_PER_RAW = 8
INCREMENTAL_GROWTH = 0.10
SIZE_SAMPLE_FILES = 2_000
MB = 2**20


def min_free_bytes() -> int:
    configured = os.environ.get(MIN_FREE_VARIABLE, "").strip()
    try:
        return int(float(configured) * MB) if configured else DEFAULT_MIN_FREE_MB * MB
    except ValueError:
        raise DiskSpaceError(f"{MIN_FREE_VARIABLE} must be a number of MB, got {configured!r}") from None


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a lake may not exist before its first landing)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(_existing(path)).free


def _sampled_bytes(root: Path, relpaths: list[str]) -> int:
    if not relpaths:
        return 0
    step = max(1, len(relpaths) // SIZE_SAMPLE_FILES)
    sample = relpaths[::step]
    total = 0
    for relpath in sample:
        try:
            total += (root / relpath).stat().st_size
        except OSError:
            continue  # landing quarantines it; it writes almost nothing
    return int(total / len(sample) * len(relpaths))


def _tree_bytes(directory: Path) -> int:
    total = 0
    for entry in directory.rglob("*"):
        try:
            if entry.is_file():
                total += entry.stat().st_size
        except OSError:
            continue
    return total


def require(lake: Path, needed: int, what: str) -> None:
    """Raise :class:`DiskSpaceError` unless ``needed`` bytes plus the margin are free where ``lake`` lives."""
    margin = min_free_bytes()
    free = free_bytes(lake)
    if free < needed + margin:
        raise DiskSpaceError(
            f"not enough free disk for {what}: it needs about {needed / MB:,.0f} MB plus the "
            f"{margin / MB:,.0f} MB kept free ({MIN_FREE_VARIABLE}), and {_existing(lake)} has "
            f"{free / MB:,.0f} MB free; nothing was written - free some space or move the lake"
        )


def check_landing(input_dir: Path, lake: Path, files_by_entity: dict[str, list[str]], image_entity: str) -> None:
    """Refuse a landing whose raw Parquet (and copied images) would not fit, before it starts."""
    json_bytes = 0
    image_bytes = 0
    same_device = _existing(lake).stat().st_dev == Path(input_dir).stat().st_dev
    for entity, relpaths in files_by_entity.items():
        subdir = Path(input_dir)
        if entity == image_entity:
            if not same_device:
                image_bytes += _sampled_bytes(subdir, relpaths)
        else:
            json_bytes += _sampled_bytes(subdir, relpaths)
    require(lake, int(json_bytes * PARQUET_PER_JSON) + image_bytes, f"landing {input_dir}")


def check_build(lake: Path, warehouse: Path, *, copy_live: bool) -> None:
    """Refuse a DuckDB build whose warehouse copy or new file would not fit, before it starts."""
    live = warehouse.stat().st_size if warehouse.is_file() else 0
    if copy_live and live:
        needed = int(live * (1 + INCREMENTAL_GROWTH))
        what = f"an incremental build (a copy of the {live / MB:,.0f} MB warehouse, then its growth)"
    else:
        needed = live or _tree_bytes(lake / "raw") * WAREHOUSE_PER_RAW
        what = "a full build (a new warehouse beside the live one)" if live else "a first build"
    require(lake, needed, what)
