"""``medlake land``: a delivery directory -> Parquet parts in ``LAKE/raw``, with a manifest.

A delivery is mostly many small files (1-4 records each), so the cost to beat is per file,
not per byte. The work is split into chunks of files; each chunk is landed by one worker
process that reads every file once (sha256 on the bytes already read, orjson to parse),
accumulates plain column lists, and writes its own part files. Nothing big crosses a
process boundary, and memory is bounded by the chunk size, not the delivery size.

Exactly-once, without a database:

* ``raw/landed_files`` is the manifest: a file whose (``source_file``, ``source_file_sha256``)
  is already in it is skipped, so re-running ``land`` adds nothing, while a file with the
  same path but new bytes (a re-delivery) lands again.
* A chunk's batch id (= ``landing_run_id`` = part file name) is a hash of the (path, sha256)
  of the files it lands. Each batch writes its data parts first and its manifest part last.
* A data part whose batch id is not in the manifest is the leftover of an interrupted run;
  ``land`` removes such orphans before it starts, then lands those files again (same
  chunking, same ids), so a crash + re-run neither loses nor duplicates rows.
* One ``land`` at a time per lake (``layout.exclusive_lock``); workers die with the parent
  (``medlake.processes``), and a lock left by a killed run is detected and broken.

Modules: files.py (walk, read, hash under the symlink policy), chunk.py (one worker's chunk),
records.py (records -> columns, pure), image_files.py (image index), parts.py (the Parquet
batch), manifest.py (exactly-once bookkeeping); this module runs the chunks and sums up.

Nothing is dropped: every record ends up in ``exams`` / ``medical_reports`` or in
``quarantine`` with a reason; files outside ``exam/``, ``medical_report/`` and ``images/``
are listed in the summary as ignored.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from medlake.errors import LandingError
from medlake.lake import disk_space
from medlake.lake import layout as lake_layout
from medlake.lake.chunk import ChunkResult, RunContext, land_chunk
from medlake.lake.files import DeliveryRoot
from medlake.lake.manifest import manifest_key, read_manifest, remove_orphan_parts
from medlake.lake.summary import LandingSummary
from medlake.processes import die_with_parent
from medlake.vocab import Entity

__all__ = ["ENTITY_DIRS", "LandingResult", "LandingSummary", "land", "land_tasks", "list_files", "manifest_key"]

# Plain strings: they fill a manifest column per file (see records._LIST).
EXAM = Entity.EXAM.value
REPORT = Entity.MEDICAL_REPORT.value
IMAGE = Entity.IMAGE.value
# Delivery sub-directory -> entity of the files in it.
ENTITY_DIRS: dict[str, str] = {"exam": EXAM, "medical_report": REPORT, "images": IMAGE}

# Files per chunk: big enough that per-chunk costs (a part file per table) vanish, small
# enough that a chunk's column lists stay well under a few hundred MB. DICOM headers cost
# ~1 ms each, so image chunks are smaller to keep both cores busy on image-heavy input.
JSON_CHUNK_FILES = 10_000
IMAGE_CHUNK_FILES = 2_000
# Below this many files, starting worker processes costs more than it saves.
MIN_FILES_FOR_WORKERS = 4_000


def list_files(root: Path, subdir: str, not_files: list[str] | None = None) -> list[str]:
    """Every file under ``root/subdir`` as sorted relative paths (see :meth:`DeliveryRoot.walk`)."""
    listing = DeliveryRoot(root).walk(subdir)
    if not_files is not None:
        not_files.extend(listing.not_files)
    return listing.files


_CONTEXT: RunContext | None = None


def _init_worker(context: RunContext | None, parent_pid: int | None = None) -> None:
    global _CONTEXT
    if parent_pid is not None:
        die_with_parent(parent_pid)  # a SIGKILLed `land` must not leave workers holding the lake lock
    _CONTEXT = context


def _land_chunk(chunk: tuple[str, list[str]]) -> ChunkResult:
    if _CONTEXT is None:  # pragma: no cover - programming error, not user input
        raise RuntimeError("landing worker used without a run context")
    return land_chunk(_CONTEXT, chunk)


# --- the run -----------------------------------------------------------------------


@dataclass(frozen=True)
class LandingResult:
    """Aggregated counts of one run over a list of files (shared by ``land`` and ``scan-dicom``)."""

    delivery_date: dt.date
    files_landed: Counter[str]
    files_skipped: Counter[str]
    rows: Counter[str]
    records_quarantined: Counter[str]
    quarantined: Counter[str]
    media_types: Counter[str]
    batches: int
    parts_written: int
    orphan_parts_removed: int
    workers: int


def _chunks(files_by_entity: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Split each entity's sorted file list into chunks: same input, same chunks, same batch ids."""
    chunks: list[tuple[str, list[str]]] = []
    for entity, relpaths in files_by_entity.items():
        size = IMAGE_CHUNK_FILES if entity == IMAGE else JSON_CHUNK_FILES
        chunks.extend((entity, relpaths[start : start + size]) for start in range(0, len(relpaths), size))
    return chunks


def _run_chunks(
    chunks: list[tuple[str, list[str]]], context: RunContext, workers: int, progress: bool
) -> Iterator[ChunkResult]:
    from tqdm import tqdm

    total = sum(len(relpaths) for _, relpaths in chunks)
    if workers <= 1 or len(chunks) <= 1 or total < MIN_FILES_FOR_WORKERS:
        _init_worker(context)
        try:
            with tqdm(total=total, unit="file", desc="land", disable=not progress, mininterval=0.5) as bar:
                for chunk in chunks:
                    result = _land_chunk(chunk)
                    bar.update(result.files)
                    yield result
        finally:
            _init_worker(None)
        return
    # fork hands the (possibly large) set of known files to workers without pickling it. The
    # workers are forked at the first submit, before the progress bar starts its monitor thread.
    methods = multiprocessing.get_all_start_methods()
    mp_context = multiprocessing.get_context("fork") if "fork" in methods else None
    with ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)),
        mp_context=mp_context,
        initializer=_init_worker,
        initargs=(context, os.getpid()),
    ) as pool:
        pending = {pool.submit(_land_chunk, chunk) for chunk in chunks}
        try:
            with tqdm(total=total, unit="file", desc="land", disable=not progress, mininterval=0.5) as bar:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        result = future.result()
                        bar.update(result.files)
                        yield result
        except BrokenProcessPool as exc:
            raise LandingError(
                "a landing worker process died (out of memory?); finished batches are kept, re-run land to resume"
            ) from exc
        finally:
            for future in pending:
                future.cancel()


def land_tasks(
    input_dir: Path,
    lake: Path,
    files_by_entity: dict[str, list[str]],
    *,
    delivery_date: dt.date | None,
    workers: int | None,
    progress: bool,
) -> LandingResult:
    """Land ``input_dir``'s files (sorted relative paths per entity) into ``lake``: the engine of land and scan-dicom.

    Relative paths are plain strings in one list per entity (no per-file objects): at a
    million files the parent's file list is the largest thing it holds.
    """
    delivery_date = delivery_date or dt.datetime.now(dt.UTC).date()
    workers = workers or os.cpu_count() or 1
    lake_layout.init_lake(lake)
    totals: dict[str, Counter[str]] = {
        name: Counter()
        for name in ("files_landed", "files_skipped", "rows", "records_quarantined", "quarantined", "media_types")
    }
    batches = parts = 0
    with lake_layout.exclusive_lock(
        lake, busy_message=f"another medlake land/scan-dicom is writing to {lake}; wait for it to finish"
    ):
        known_files, completed_batches = read_manifest(lake)
        orphans = remove_orphan_parts(lake, completed_batches)
        context = RunContext(
            input_root=str(input_dir),
            lake=str(lake),
            delivery_date=delivery_date,
            ingested_at=dt.datetime.now(dt.UTC),
            known_files=known_files,
        )
        chunks = _chunks(files_by_entity)
        for result in _run_chunks(chunks, context, workers, progress):
            for name, counter in totals.items():
                counter.update(getattr(result, name))
            batches += result.batch_id is not None
            parts += result.parts_written
    total_files = sum(len(relpaths) for relpaths in files_by_entity.values())
    parallel = len(chunks) > 1 and total_files >= MIN_FILES_FOR_WORKERS
    return LandingResult(
        delivery_date=delivery_date,
        batches=batches,
        parts_written=parts,
        orphan_parts_removed=orphans,
        workers=min(workers, len(chunks)) if parallel else 1,
        **totals,
    )


def land(
    input_dir: Path,
    lake: Path,
    *,
    delivery_date: dt.date | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> LandingSummary:
    """Land ``input_dir``'s exam/, medical_report/ and images/ into ``lake``'s raw layer."""
    started = time.perf_counter()
    input_dir, lake = Path(input_dir), Path(lake)
    if not input_dir.exists():
        raise LandingError(f"input directory not found: {input_dir}")
    if not input_dir.is_dir():
        raise LandingError(f"input is not a directory: {input_dir}")
    present: list[str] = []
    ignored: list[str] = []
    try:
        with os.scandir(input_dir) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name in ENTITY_DIRS and entry.is_dir():
                    present.append(entry.name)
                else:
                    ignored.append(entry.name + ("/" if entry.is_dir() else ""))
    except OSError as exc:
        raise LandingError(f"cannot list input directory {input_dir}: {exc.strerror or exc}") from exc
    if not present:
        raise LandingError(
            f"{input_dir} has none of exam/, medical_report/, images/: nothing to land "
            f"(found: {', '.join(ignored) or 'nothing'})"
        )
    files_by_entity: dict[str, list[str]] = {}
    files_seen: dict[str, int] = {}
    for directory in present:
        entity = ENTITY_DIRS[directory]
        relpaths = list_files(input_dir, directory, ignored)
        files_seen[entity] = len(relpaths)
        files_by_entity[entity] = relpaths
    disk_space.check_landing(input_dir, lake, files_by_entity, image_entity=IMAGE)  # refuse before writing
    result = land_tasks(
        input_dir, lake, files_by_entity, delivery_date=delivery_date, workers=workers, progress=progress
    )
    return LandingSummary(
        input_dir=str(input_dir),
        lake=str(lake),
        delivery_date=result.delivery_date.isoformat(),
        files_seen=files_seen,
        files_landed=dict(result.files_landed),
        files_skipped=dict(result.files_skipped),
        ignored_entries=tuple(ignored),
        rows_landed=dict(result.rows),
        records_quarantined=dict(result.records_quarantined),
        quarantined=dict(result.quarantined),
        media_types=dict(result.media_types),
        batches=result.batches,
        parts_written=result.parts_written,
        orphan_parts_removed=result.orphan_parts_removed,
        workers=result.workers,
        seconds=time.perf_counter() - started,
    )
