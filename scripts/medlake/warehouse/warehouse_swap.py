"""Builds go into a new warehouse file that replaces the live one in one atomic rename.

Readers (``medlake query``, a notebook's open connection, ``dbt docs``) only ever open the live
``LAKE/medlake.duckdb`` read-only, and no build writes it in place (issue 9 item 4):

1. under the lake lock, the live file is copied to ``LAKE/.building/medlake.duckdb`` (an
   incremental build needs the previous marts; a first build or full refresh starts empty). The
   same file name keeps DuckDB's catalog name (``medlake``), which dbt writes into every view;
2. dbt builds, the build record is written and the docs catalog is read from that copy;
3. the copy is checkpointed (no ``.wal`` left), fsynced and renamed over the live file.

A reader that opened the old file keeps reading it (its inode lives until it closes); a reader
opening after the rename sees the new build; nobody sees a build half done. A killed or failed
build leaves only ``.building/``, which the next build deletes. The cost is one file copy per
incremental build and twice the warehouse's size on disk while it runs (README, "Security and
failure behaviour", has the measured figures).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import duckdb

from medlake.atomic import durable_replace
from medlake.errors import LakeError
from medlake.lake import layout as lake_layout

BUILDING_DIR = ".building"
WAL_SUFFIX = ".wal"


def building_path(lake: Path) -> Path:
    return lake / BUILDING_DIR / lake_layout.WAREHOUSE_FILE


def _wal(path: Path) -> Path:
    return path.with_name(path.name + WAL_SUFFIX)


def checkpoint(warehouse: Path) -> None:
    """Fold ``warehouse``'s write-ahead log into the file, so the file alone is the database."""
    try:
        with duckdb.connect(str(warehouse)) as connection:
            connection.execute("checkpoint")
    except duckdb.Error as exc:
        raise LakeError(
            f"cannot checkpoint {warehouse} ({str(exc).splitlines()[0]}); it has a write-ahead log from a "
            "writer other than medlake: close every connection to it and build again"
        ) from exc


def prepare(lake: Path, *, copy_live: bool) -> tuple[Path, float]:
    """A fresh build file for ``lake`` (a copy of the live warehouse when ``copy_live``), and the copy's seconds."""
    target = building_path(lake)
    discard(lake)  # what a killed build left
    target.parent.mkdir(mode=0o700)
    live = lake_layout.warehouse_path(lake)
    started = time.perf_counter()
    if copy_live and live.is_file():
        if _wal(live).exists():
            checkpoint(live)
        try:
            shutil.copyfile(live, target)  # os.sendfile on Linux: in-kernel, no user-space buffer
        except OSError as exc:
            raise LakeError(f"cannot copy the warehouse {live} for the build: {exc.strerror or exc}") from exc
    return target, time.perf_counter() - started


def publish(lake: Path, built: Path) -> None:
    """Make ``built`` the live warehouse in one rename (after checkpointing and syncing it)."""
    checkpoint(built)
    if _wal(built).exists():
        raise LakeError(f"{built} still has a write-ahead log after a checkpoint; the build is not published")
    durable_replace(built, lake_layout.warehouse_path(lake))
    discard(lake)


def discard(lake: Path) -> None:
    """Delete a build file that was not published (failed, killed, or left from before)."""
    shutil.rmtree(lake / BUILDING_DIR, ignore_errors=True)
