"""The lake directory on disk: where each raw table lives and how files get there safely.

Layout::

    LAKE/
      raw/<table>/schema.parquet                                   zero rows, the table's schema
      raw/<table>/delivery_date=YYYY-MM-DD/part-<batch>.parquet    data, one file per batch
      medlake.duckdb                                               dbt's warehouse

The zero-row ``schema.parquet`` means every dbt source resolves even before the first
delivery of that kind (DuckDB refuses a glob that matches nothing). Part files are
written to a hidden temporary name in the same directory and renamed into place, so a
reader never sees half a file; a batch re-written after a crash gets the same name
because batch ids are derived from the batch's inputs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from medlake.atomic import atomic_path
from medlake.errors import LakeError
from medlake.file_modes import restrict_umask
from medlake.lake.raw_schema import RAW_TABLES

WAREHOUSE_FILE = "medlake.duckdb"
# One advisory lock per lake, held by `land`/`scan-dicom` and by `build`: a build must never see half a landing.
LOCK_FILE = ".landing.lock"
PARQUET_COMPRESSION = "zstd"


def raw_dir(lake: Path, table: str) -> Path:
    if table not in RAW_TABLES:
        raise LakeError(f"unknown raw table {table!r}; known: {', '.join(sorted(RAW_TABLES))}")
    return lake / "raw" / table


def warehouse_path(lake: Path) -> Path:
    return lake / WAREHOUSE_FILE


def init_lake(lake: Path) -> None:
    """Create the lake's folders and each raw table's zero-row schema file (idempotent).

    Every writer starts here, so this is where the process umask is tightened (``file_modes``):
    nothing under the lake is readable by other users, whether medlake runs as a CLI or a library.
    """
    restrict_umask()
    try:
        for table, schema in RAW_TABLES.items():
            directory = raw_dir(lake, table)
            directory.mkdir(parents=True, exist_ok=True)
            schema_file = directory / "schema.parquet"
            if not schema_file.exists() or pq.read_schema(schema_file) != schema:
                write_parquet_atomic(schema.empty_table(), schema_file)
    except OSError as exc:
        raise LakeError(f"cannot write to lake directory {lake}: {exc.strerror or exc}") from exc


def part_path(lake: Path, table: str, delivery_date: dt.date, batch_id: str) -> Path:
    return raw_dir(lake, table) / f"delivery_date={delivery_date.isoformat()}" / f"part-{batch_id}.parquet"


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` so that the file appears complete or not at all."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
    return path


def write_part(lake: Path, table: str, rows: pa.Table, delivery_date: dt.date, batch_id: str) -> Path | None:
    """Write one batch of a raw table; returns None (and writes nothing) for an empty batch."""
    if rows.num_rows == 0:
        return None
    schema = RAW_TABLES[table]
    return write_parquet_atomic(rows.cast(schema), part_path(lake, table, delivery_date, batch_id))


def read_raw(lake: Path, table: str) -> pa.Table:
    """Read a whole raw table (all parts). For tests and small tables, not for big scans."""
    files = sorted(raw_dir(lake, table).rglob("*.parquet"))
    schema = RAW_TABLES[table]
    if not files:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=schema) for f in files])


# How long a lock must stay with the same dead holder before its remaining holders count as orphans.
_STALE_CONFIRM_SECONDS = 0.5
_KILL_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class LockHolder:
    """Who took the lake lock: written into the lock file by the process that holds it."""

    pid: int
    start_ticks: int | None  # the process's start time (/proc/<pid>/stat), so a reused pid is not mistaken
    host: str
    command: str

    @classmethod
    def me(cls) -> LockHolder:
        return cls(os.getpid(), _start_ticks(os.getpid()), socket.gethostname(), " ".join(sys.argv[:2]))

    def alive(self) -> bool:
        """True unless this host can tell the holder process is gone (another host's holder counts as alive)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return self.start_ticks is None or _start_ticks(self.pid) == self.start_ticks


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # Field 22 (starttime); the command name (field 2) may hold spaces, so split after its ')'.
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _read_holder(handle: BinaryIO) -> LockHolder | None:
    try:
        handle.seek(0)
        return LockHolder(**json.loads(handle.read() or b"null"))
    except (OSError, TypeError, ValueError):
        return None


def _write_holder(handle: BinaryIO) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(asdict(LockHolder.me())).encode())
    handle.flush()


def _processes_holding(handle: BinaryIO) -> list[int]:
    """Pids (not this one) with the lock file open: after its holder died, the children that inherited it."""
    target = os.fstat(handle.fileno())
    found: list[int] = []
    with contextlib.suppress(OSError):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        info = os.stat(f"/proc/{pid}/fd/{fd}")
                        if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
                            found.append(int(pid))
                            break
    return found


def _break_stale_lock(handle: BinaryIO, holder: LockHolder, lake: Path) -> None:
    """The holder is dead but the lock is held: stop the processes that inherited it, then take it."""
    time.sleep(_STALE_CONFIRM_SECONDS)  # a new holder writes its record right after taking the lock
    if _read_holder(handle) != holder:
        raise LakeError(f"the lock on {lake} changed hands while checking it; try again")
    orphans = _processes_holding(handle)
    for pid in orphans:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT_SECONDS
    while not _try_lock(handle):
        if time.monotonic() > deadline:
            raise LakeError(
                f"{lake} is locked by processes of a dead `{holder.command}` (pid {holder.pid}) that medlake "
                f"cannot stop (pids: {', '.join(map(str, orphans)) or 'not visible'}); stop them, then re-run"
            )
        time.sleep(0.1)
    print(
        f"medlake: broke a stale lake lock: its holder `{holder.command}` (pid {holder.pid}) is dead; "
        f"stopped {len(orphans)} leftover process(es) still holding it ({', '.join(map(str, orphans))})",
        file=sys.stderr,
    )


def _try_lock(handle: BinaryIO) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def exclusive_lock(lake: Path, *, busy_message: str) -> Iterator[BinaryIO]:
    """Hold the lake's exclusive advisory lock for the with-block; fail fast with ``busy_message`` if taken.

    The holder's pid and start time are written into the lock file. flock is released by the
    kernel only when every process sharing the open file is gone, and forked children inherit
    it: if the recorded holder is dead while the lock is still held, its leftover children are
    stopped and the lock is taken, with a message (the lake is then repaired by the command's
    own crash recovery, e.g. land's orphan-part removal).

    Yields the locked file: a child process that inherits its descriptor (``pass_fds``) holds the
    lock with its parent, so the lock is free only once both have ended (``medlake build``'s dbt).
    """
    lock_path = lake / "raw" / LOCK_FILE
    try:
        handle = open(lock_path, "a+b")  # noqa: SIM115 - held for the whole with-block
    except OSError as exc:
        raise LakeError(f"cannot write to lake directory {lake}: {exc.strerror or exc}") from exc
    try:
        if not _try_lock(handle):
            holder = _read_holder(handle)
            if holder is None or holder.alive():
                raise LakeError(busy_message)
            _break_stale_lock(handle, holder, lake)
        _write_holder(handle)
        try:
            yield handle
        finally:
            with contextlib.suppress(OSError):
                handle.truncate(0)
    finally:
        handle.close()
