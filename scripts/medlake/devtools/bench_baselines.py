"""The alternatives medlake's landing is measured against, written the way people write them.

* ``pandas_landing``: ``json.load`` per file, ``pd.json_normalize``, ``to_parquet`` — the peer baseline.
* ``duckdb_copy``: DuckDB's bare ``COPY (SELECT * FROM read_json(...)) TO '...parquet'``, with no
  validation, dedup or quarantine (the obvious one-liner).
* ``read_floor``: the time to read every input byte once, file by file (the floor any lander pays).

They exist only for ``medlake bench``; none of them is a product code path.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from medlake.warehouse import sql_text


@dataclass(frozen=True)
class BaselineResult:
    seconds: float
    records: int
    files: int
    bytes_read: int
    error: str | None = None


def list_json_files(delivery: Path, entity: str = "exam", limit_files: int | None = None) -> list[Path]:
    directory = delivery / entity
    files = sorted(entry.path for entry in os.scandir(directory) if entry.is_file() and entry.name.endswith(".json"))
    if limit_files is not None:
        files = files[:limit_files]
    return [Path(f) for f in files]


def read_floor(delivery: Path) -> BaselineResult:
    """Open and read every file of the delivery once (exam/ and medical_report/), nothing else."""
    start = time.perf_counter()
    files = 0
    total = 0
    for entity in ("exam", "medical_report"):
        directory = delivery / entity
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            if entry.is_file():
                with open(entry.path, "rb") as handle:
                    total += len(handle.read())
                files += 1
    return BaselineResult(time.perf_counter() - start, records=0, files=files, bytes_read=total)


def read_floor_parallel(delivery: Path, threads: int = 16) -> BaselineResult:
    """The same reads spread over a thread pool: the floor for a reader that overlaps file I/O."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [
        entry.path
        for entity in ("exam", "medical_report")
        if (delivery / entity).is_dir()
        for entry in os.scandir(delivery / entity)
        if entry.is_file()
    ]

    def size_of_read(path: str) -> int:
        with open(path, "rb") as handle:
            return len(handle.read())

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        total = sum(pool.map(size_of_read, paths, chunksize=256))
    return BaselineResult(time.perf_counter() - start, records=0, files=len(paths), bytes_read=total)


def pandas_landing(files: list[Path], out: Path) -> BaselineResult:
    """The usual notebook landing: one json.load per file, json_normalize, to_parquet.

    Malformed files are skipped with a bare ``except`` (the usual shortcut), so this baseline does
    strictly less work than medlake's landing: no quarantine, no lineage beyond the file name.
    """
    import pandas as pd

    start = time.perf_counter()
    frames = []
    total = 0
    for path in files:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        total += len(text)
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        records = data if isinstance(data, list) else [data]
        records = [r for r in records if isinstance(r, dict)]
        if not records:
            continue
        frame = pd.json_normalize(records, sep="_")
        frame["source_file"] = path.name
        frames.append(frame)
    exams = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    records = len(exams)
    # Mixed types (id int or str, source str or list, labels list) must be stringified for Parquet.
    for column in exams.columns:
        if exams[column].dtype == object:
            exams[column] = exams[column].map(
                lambda v: None if v is None else json.dumps(v) if not isinstance(v, str) else v
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    exams.to_parquet(out, index=False)
    return BaselineResult(time.perf_counter() - start, records=records, files=len(files), bytes_read=total)


def duckdb_copy(files: list[Path], out: Path, skip_files: set[str], threads: int | None = None) -> BaselineResult:
    """The bare DuckDB one-liner over the exam files, given the best chance to finish.

    As people write it (``read_json('exam/*.json')``) it aborts on the first malformed file and on a
    label that is not an object, so it runs on a hard-linked mirror of the delivery without
    ``skip_files`` (names of the files medlake quarantined as unparseable) and with ``content`` typed as JSON.
    Only the COPY is timed; it validates nothing, dedups nothing and quarantines nothing.
    """
    import duckdb

    mirror = out.parent / "duckdb_copy_input" / "exam"
    shutil.rmtree(mirror.parent, ignore_errors=True)
    mirror.mkdir(parents=True)
    linked = 0
    for path in files:
        if f"exam/{path.name}" not in skip_files:
            os.link(path, mirror / path.name)
            linked += 1
    pattern = sql_text.string_literal(sql_text.glob_escape(mirror) + "/*.json")
    connection = duckdb.connect()
    if threads:
        connection.execute(f"set threads = {int(threads)}")
    error = None
    start = time.perf_counter()
    try:
        connection.execute(
            f"copy (select * from read_json({pattern}, columns = {{'content': 'JSON', "
            f"'publication_timestamp': 'DOUBLE'}}, filename = true)) to {sql_text.string_literal(out)} (format parquet)"
        )
        seconds = time.perf_counter() - start
        records = connection.execute("select count(*) from read_parquet(?)", [sql_text.glob_escape(out)]).fetchone()[0]
    except Exception as exc:  # the one-liner's failure is itself a result worth reporting
        seconds = time.perf_counter() - start
        records = 0
        error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        connection.close()
        shutil.rmtree(mirror.parent, ignore_errors=True)
    return BaselineResult(seconds, records=int(records), files=linked, bytes_read=0, error=error)
