"""Writing a file so that it appears complete or not at all, and survives a power cut once written.

One durability rule for every file medlake replaces (raw parts, build records, cursors, results,
de-identified copies): write a temporary file in the same folder, fsync it, rename it over the
target, fsync the folder. A crash leaves either the old file or the new one, never a torn one;
a leftover ``.partial`` is only ever a temporary of a write that did not finish.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(source: Path, target: Path) -> None:
    """Rename a complete ``source`` over ``target``: fsync the file, rename, fsync the folder."""
    fsync_path(source)
    os.replace(source, target)
    fsync_path(target.parent)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` (not yet existing) to write; on success it replaces ``target``.

    On an exception the temporary is removed and ``target`` is left as it was::

        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}")
    try:
        yield tmp
        durable_replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(target: Path, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text in ``encoding``) to ``target`` atomically and durably."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return Path(target)
