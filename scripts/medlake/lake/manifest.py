"""The landing manifest (``raw/landed_files``): what is landed already, and which batches completed.

A file whose (``source_file``, ``source_file_sha256``) is in the manifest is skipped, so
re-running ``land`` adds nothing, while the same path with new bytes (a re-delivery) lands
again. A batch is complete when its manifest part exists (it is written last, see
:mod:`medlake.lake.parts`); a data part of any other batch is the leftover of an interrupted
run and :func:`remove_orphan_parts` deletes it before the files are landed again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Set as AbstractSet
from pathlib import Path

import pyarrow.parquet as pq

from medlake.lake import layout as lake_layout
from medlake.lake.parts import BATCH_TABLES, MANIFEST_TABLE

_BATCH_PART = re.compile(r"^part-([0-9a-f]{32})\.parquet$")
_blake2b = hashlib.blake2b


def manifest_key(source_file: str, sha256: str) -> bytes:
    """A 16-byte digest of (source_file, sha256): a third of the memory of the text key, and at a
    million landed files the set of keys is what a re-run holds in memory. Collisions at 128 bits
    are out of reach (about 1e-27 for a million files)."""
    return _blake2b(f"{source_file}\0{sha256}".encode(), digest_size=16).digest()


def _manifest_parts(lake: Path) -> list[Path]:
    return sorted(lake_layout.raw_dir(lake, MANIFEST_TABLE).glob("delivery_date=*/part-*.parquet"))


def read_manifest(lake: Path) -> tuple[AbstractSet[bytes], AbstractSet[str]]:
    """(:func:`manifest_key` of every landed file, batch ids that completed) from the manifest."""
    keys: set[bytes] = set()
    batches: set[str] = set()
    for part in _manifest_parts(lake):
        match = _BATCH_PART.match(part.name)
        if match:
            batches.add(match.group(1))  # the part's name, so an empty manifest part counts too
        table = pq.read_table(part, columns=["source_file", "source_file_sha256"])
        keys.update(map(manifest_key, table["source_file"].to_pylist(), table["source_file_sha256"].to_pylist()))
    return keys, batches  # not copied into frozensets: at a million keys the copy alone is ~100 MB


def remove_orphan_parts(lake: Path, completed_batches: AbstractSet[str]) -> int:
    """Delete data parts of batches that never wrote their manifest part (an interrupted run)."""
    removed = 0
    for table in BATCH_TABLES:
        if table == MANIFEST_TABLE:
            continue
        for part in lake_layout.raw_dir(lake, table).glob("delivery_date=*/part-*.parquet"):
            match = _BATCH_PART.match(part.name)
            if match and match.group(1) not in completed_batches:
                part.unlink()
                removed += 1
    return removed
