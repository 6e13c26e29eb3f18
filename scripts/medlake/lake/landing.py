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
* One ``land`` at a time per lake (an advisory lock on ``LAKE/raw/.landing.lock``).

Nothing is dropped: every record ends up in ``exams`` / ``medical_reports`` or in
``quarantine`` with a reason; files outside ``exam/``, ``medical_report/`` and ``images/``
are listed in the summary as ignored.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import itertools
import multiprocessing
import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medlake.errors import DicomError, LakeError, LandingError
from medlake.lake import layout as lake_layout
from medlake.lake import objects, raw_schema
from medlake.lake.dicom_headers import read_header
from medlake.lake.image_files import DICOM_MEDIA_TYPE, claims_dicom, looks_like_bare_dicom, read_file_facts
from medlake.lake.json_records import (
    CONTENT_NOT_OBJECT,
    LABEL_NOT_OBJECT,
    LABELS_NOT_LIST,
    MISSING_CONTENT,
    RECORD_NOT_OBJECT,
    UNREADABLE_FILE,
    LineError,
    compact_json,
    excerpt_of_value,
    parse_delivery_file,
    raw_value,
)

EXAM = "exam"
REPORT = "medical_report"
IMAGE = "image"
# Delivery sub-directory -> entity of the files in it.
ENTITY_DIRS: dict[str, str] = {"exam": EXAM, "medical_report": REPORT, "images": IMAGE}
UNREADABLE_DICOM = "unreadable_dicom"

# Files per chunk: big enough that per-chunk costs (a part file per table) vanish, small
# enough that a chunk's column lists stay well under a few hundred MB. DICOM headers cost
# ~1 ms each, so image chunks are smaller to keep both cores busy on image-heavy input.
JSON_CHUNK_FILES = 10_000
IMAGE_CHUNK_FILES = 2_000
# Below this many files, starting worker processes costs more than it saves.
MIN_FILES_FOR_WORKERS = 4_000
# Reader threads per worker and files per read task (see _read_ahead).
READ_THREADS = 8
READ_BATCH_FILES = 64

# Tables whose parts carry a landing batch id (and can be orphaned by an interrupted run).
BATCHED_TABLES = ("exams", "exam_labels", "medical_reports", "quarantine", "image_files", "dicom_instances")
DATA_TABLES = ("exams", "exam_labels", "medical_reports", "image_files", "dicom_instances")
_BATCH_PART = re.compile(r"^part-([0-9a-f]{32})\.parquet$")

_EXAM_TOP_KEYS = frozenset({"content", "publication_timestamp"})
_EXAM_CONTENT_KEYS = frozenset({"id", "source", "dataset_type", "dataset", "body_part", "image_path", "labels"})
_LABEL_KEYS = frozenset(
    {"classification", "labelled_by", "labelled_date", "labelling_method", "classification_type", "value"}
)
_REPORT_TOP_KEYS = frozenset({"content"})
_REPORT_CONTENT_KEYS = frozenset({"exam_id", "report_date", "reported_by", "text"})
_LABEL_COLUMNS = ("classification", "labelled_by", "labelled_date", "labelling_method", "classification_type", "value")
_ONLY_DICT = {dict}
_BOOL_TEXT = {True: "true", False: "false"}
_ABSENT = object()
_READ_SIZE = 1 << 18
_loads = orjson.loads
_blake2b = hashlib.blake2b
_JSONDecodeError = orjson.JSONDecodeError


# --- listing -----------------------------------------------------------------------


def list_files(root: Path, subdir: str, not_files: list[str] | None = None) -> list[str]:
    """Every file under ``root/subdir`` (recursive), as sorted POSIX paths relative to ``root``.

    Symlinked directories are not followed (no loops); symlinked files are landed like files,
    and a dangling symlink is listed too, so reading it fails and it is quarantined
    (``unreadable_file``) rather than silently missing. FIFOs, sockets and devices are not
    read (a FIFO would block): they are appended to ``not_files`` for the summary.
    """
    found: list[str] = []
    start = root / subdir if subdir else root
    pending = [(str(start), f"{subdir}/" if subdir else "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((entry.path, f"{prefix}{entry.name}/"))
                    elif entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path)):
                        found.append(prefix + entry.name)
                    elif not_files is not None and not entry.is_dir():
                        not_files.append(f"{prefix}{entry.name} (not a regular file)")
        except OSError as exc:
            raise LandingError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    found.sort()
    return found


# --- the per-chunk worker -------------------------------------------------------------


@dataclass(frozen=True)
class _RunContext:
    """What every chunk of one run shares. Handed to forked workers without pickling."""

    input_root: str
    lake: str
    delivery_date: dt.date
    ingested_at: dt.datetime
    known_files: AbstractSet[bytes]  # manifest_key() of every file already in the manifest


_CONTEXT: _RunContext | None = None


def _init_worker(context: _RunContext) -> None:
    global _CONTEXT
    _CONTEXT = context


@dataclass(frozen=True)
class ChunkResult:
    """Counts from one landed chunk (the rows themselves went to part files)."""

    files: int
    batch_id: str | None
    files_landed: Counter[str]
    files_skipped: Counter[str]
    rows: Counter[str]
    records_quarantined: Counter[str]  # by entity: record- and file-level quarantine rows
    quarantined: Counter[str]  # by reason_code: every quarantine row
    media_types: Counter[str]
    parts_written: int


# The five lineage columns every landed table starts with (raw_schema._LINEAGE).
LINEAGE_COLUMNS = ("landing_run_id", "delivery_date", "ingested_at", "source_file", "source_file_sha256")


def _new_columns(schema: pa.Schema) -> dict[str, list[Any]]:
    """One empty list per non-lineage column of ``schema``."""
    if tuple(schema.names[: len(LINEAGE_COLUMNS)]) != LINEAGE_COLUMNS:  # pragma: no cover - contract guard
        raise AssertionError(f"raw schema does not start with the lineage columns: {schema.names}")
    return {name: [] for name in schema.names[len(LINEAGE_COLUMNS) :]}


class _ChunkBuilder:
    """Column lists for one chunk: one list per column, plus the file index of each row."""

    def __init__(self) -> None:
        # Lineage: per landed file; rows refer to files by index (one take() at build time).
        self.paths: list[str] = []
        self.shas: list[str] = []
        self.exams = _new_columns(raw_schema.EXAMS)
        self.labels = _new_columns(raw_schema.EXAM_LABELS)
        self.reports = _new_columns(raw_schema.MEDICAL_REPORTS)
        # Parsed dicts of landed records, turned into columns once per chunk (_exam_columns).
        self.exam_records: list[dict] = []
        self.exam_contents: list[dict] = []
        self.label_dicts: list[dict] = []
        self.report_records: list[dict] = []
        self.report_contents: list[dict] = []
        self.quarantine = _new_columns(raw_schema.QUARANTINE)
        self.manifest = _new_columns(raw_schema.LANDED_FILES)
        self.images = _new_columns(raw_schema.IMAGE_FILES)
        self.dicoms = _new_columns(raw_schema.DICOM_INSTANCES)
        self.file_of: dict[str, list[int]] = {
            "exams": [],
            "exam_labels": [],
            "medical_reports": [],
            "quarantine": [],
            "landed_files": [],
            "image_files": [],
            "dicom_instances": [],
        }
        self.files_landed: Counter[str] = Counter()
        self.files_skipped: Counter[str] = Counter()
        self.records_quarantined: Counter[str] = Counter()
        self.media_types: Counter[str] = Counter()

    # -- bookkeeping --

    def add_file(self, relpath: str, sha256: str) -> int:
        self.paths.append(relpath)
        self.shas.append(sha256)
        return len(self.paths) - 1

    def quarantine_row(
        self,
        file_index: int,
        entity: str,
        record_position: int | None,
        label_position: int | None,
        reason_code: str,
        reason: str,
        excerpt: str | None,
    ) -> None:
        q = self.quarantine
        self.file_of["quarantine"].append(file_index)
        q["entity"].append(entity)
        q["record_position"].append(record_position)
        q["label_position"].append(label_position)
        q["reason_code"].append(reason_code)
        q["reason"].append(reason)
        q["raw_excerpt"].append(excerpt)
        if entity != "exam_label":
            self.records_quarantined[entity] += 1

    def manifest_row(self, file_index: int, entity: str, size: int, landed: int, quarantined: int) -> None:
        m = self.manifest
        self.file_of["landed_files"].append(file_index)
        m["entity"].append(entity)
        m["size_bytes"].append(size)
        m["records_landed"].append(landed)
        m["records_quarantined"].append(quarantined)
        self.files_landed[entity] += 1

    # -- record-level checks shared by exams and reports --

    def _record_content(self, file_index: int, entity: str, position: int, record: Any) -> dict | None:
        """The record's content object, or None after quarantining why there is none."""
        if record.__class__ is not dict:
            if record.__class__ is LineError:
                self.quarantine_row(file_index, entity, position, None, record.code, record.reason, record.excerpt)
            else:
                kind = _json_kind(record)
                self.quarantine_row(
                    file_index,
                    entity,
                    position,
                    None,
                    RECORD_NOT_OBJECT,
                    f"record {position} is a JSON {kind}, not an object",
                    excerpt_of_value(record),
                )
            return None
        content = record.get("content")
        if content.__class__ is dict:
            return content
        if content is None:
            state = "is null" if "content" in record else "is missing"
            code, reason = MISSING_CONTENT, f"record {position}: 'content' {state}"
        else:
            code, reason = CONTENT_NOT_OBJECT, f"record {position}: 'content' is a JSON {_json_kind(content)}"
        self.quarantine_row(file_index, entity, position, None, code, reason, excerpt_of_value(record))
        return None

    # -- entities --

    def land_exams(self, file_index: int, records: list[Any]) -> int:
        """Land a file's exam records and their labels; returns how many exams landed.

        The hot loop only checks structure and keeps references to the parsed dicts; the
        columns are pulled out later, once per chunk, by list comprehensions (see
        :meth:`_exam_columns`): per-record Python work is what limits landing speed.
        """
        e = self.exams
        e_pos, e_state, e_count = e["record_position"], e["labels_state"], e["label_entry_count"]
        exam_records, exam_contents, exam_files = self.exam_records, self.exam_contents, self.file_of["exams"]
        label_dicts, l_pos, l_lpos = self.label_dicts, self.labels["record_position"], self.labels["label_position"]
        label_files = self.file_of["exam_labels"]
        landed = 0
        for position, record in enumerate(records):
            content = self._record_content(file_index, EXAM, position, record)
            if content is None:
                continue
            labels = content.get("labels", _ABSENT)
            if labels.__class__ is list:
                state = "list"
            elif labels is _ABSENT:
                state, labels = "absent", ()
            elif labels is None:
                state, labels = "null", ()
            else:
                self.quarantine_row(
                    file_index,
                    EXAM,
                    position,
                    None,
                    LABELS_NOT_LIST,
                    f"record {position}: 'labels' is a JSON {_json_kind(labels)}, not a list",
                    excerpt_of_value(record),
                )
                continue
            exam_files.append(file_index)
            e_pos.append(position)
            exam_records.append(record)
            exam_contents.append(content)
            e_state.append(state)
            count = len(labels)
            e_count.append(count)
            landed += 1
            if not count:
                continue
            if set(map(type, labels)) == _ONLY_DICT:
                label_dicts.extend(labels)
                label_files.extend([file_index] * count)
                l_pos.extend([position] * count)
                l_lpos.extend(range(count))
                continue
            for label_position, label in enumerate(labels):
                if label.__class__ is dict:
                    label_dicts.append(label)
                    label_files.append(file_index)
                    l_pos.append(position)
                    l_lpos.append(label_position)
                else:
                    self.quarantine_row(
                        file_index,
                        "exam_label",
                        position,
                        label_position,
                        LABEL_NOT_OBJECT,
                        f"record {position} label {label_position} is a JSON {_json_kind(label)}, not an object",
                        excerpt_of_value(label),
                    )
        return landed

    def land_reports(self, file_index: int, records: list[Any]) -> int:
        """Land a file's medical report records; returns how many landed."""
        report_records, report_contents = self.report_records, self.report_contents
        r_pos, report_files = self.reports["record_position"], self.file_of["medical_reports"]
        landed = 0
        for position, record in enumerate(records):
            content = self._record_content(file_index, REPORT, position, record)
            if content is None:
                continue
            report_files.append(file_index)
            r_pos.append(position)
            report_records.append(record)
            report_contents.append(content)
            landed += 1
        return landed

    def _exam_columns(self) -> None:
        """Pull the exam, label and report columns out of the kept dicts (once per chunk), then drop them."""
        contents, records = self.exam_contents, self.exam_records
        e = self.exams
        for column in ("id", "source", "dataset_type", "dataset", "body_part", "image_path"):
            e[column] = _text_array([content.get(column) for content in contents])
        e["publication_timestamp"] = _text_array([record.get("publication_timestamp") for record in records])
        e["extra_fields_json"] = [
            None
            if record.keys() <= _EXAM_TOP_KEYS and content.keys() <= _EXAM_CONTENT_KEYS
            else _extra_fields(record, _EXAM_TOP_KEYS, content, _EXAM_CONTENT_KEYS)
            for record, content in zip(records, contents, strict=True)
        ]
        labels = self.label_dicts
        lab = self.labels
        for column in _LABEL_COLUMNS:
            lab[column] = _text_array([label.get(column) for label in labels])
        lab["extra_fields_json"] = [
            None if label.keys() <= _LABEL_KEYS else _extra_fields(label, _LABEL_KEYS) for label in labels
        ]
        contents, records = self.report_contents, self.report_records
        r = self.reports
        for column in ("exam_id", "report_date", "reported_by", "text"):
            r[column] = _text_array([content.get(column) for content in contents])
        r["extra_fields_json"] = [
            None
            if record.keys() <= _REPORT_TOP_KEYS and content.keys() <= _REPORT_CONTENT_KEYS
            else _extra_fields(record, _REPORT_TOP_KEYS, content, _REPORT_CONTENT_KEYS)
            for record, content in zip(records, contents, strict=True)
        ]
        self.exam_records, self.exam_contents, self.label_dicts = [], [], []
        self.report_records, self.report_contents = [], []

    def land_json_file(self, context: _RunContext, relpath: str, entity: str, data: bytes | OSError) -> None:
        """Land one exam or report file from its bytes (or the error reading it raised)."""
        if isinstance(data, OSError):
            self._unreadable(relpath, entity, data)
            return
        sha256 = hashlib.sha256(data).hexdigest()
        if manifest_key(relpath, sha256) in context.known_files:
            self.files_skipped[entity] += 1
            return
        file_index = self.add_file(relpath, sha256)
        # Fast path: the usual file is one well-formed JSON array.
        try:
            value = _loads(data)
        except _JSONDecodeError:
            value = None
        if value.__class__ is list:
            records = value
        else:
            parsed = parse_delivery_file(data)
            if parsed.error_code is not None:
                self.quarantine_row(
                    file_index, entity, None, None, parsed.error_code, parsed.error or "", parsed.excerpt
                )
                self.manifest_row(file_index, entity, len(data), 0, 1)
                return
            records = parsed.records
        before = self.records_quarantined[entity]
        land_records = self.land_exams if entity == EXAM else self.land_reports
        landed = land_records(file_index, records)
        self.manifest_row(file_index, entity, len(data), landed, self.records_quarantined[entity] - before)

    def land_image_file(self, context: _RunContext, relpath: str) -> None:
        path = Path(context.input_root, relpath)
        try:
            facts = read_file_facts(path)
        except OSError as exc:
            self._unreadable(relpath, IMAGE, exc)
            return
        if manifest_key(relpath, facts.sha256) in context.known_files:
            self.files_skipped[IMAGE] += 1
            return
        # The original is kept in the lake (content-addressed), so the delivery may be deleted.
        objects.store_file(Path(context.lake), path, facts.sha256, size_bytes=facts.size_bytes)
        file_index = self.add_file(relpath, facts.sha256)
        file_name = relpath.rsplit("/", 1)[-1]
        media_type = facts.media_type
        claimed = claims_dicom(file_name, facts.head)
        header = None
        if claimed or looks_like_bare_dicom(facts.head):
            try:
                header = read_header(path, file_size=facts.size_bytes)
                media_type = DICOM_MEDIA_TYPE
            except DicomError as exc:
                if claimed:
                    self.quarantine_row(file_index, IMAGE, None, None, UNREADABLE_DICOM, str(exc), None)
        self.file_of["image_files"].append(file_index)
        images = self.images
        images["file_name"].append(file_name)
        images["size_bytes"].append(facts.size_bytes)
        images["media_type"].append(media_type)
        images["is_dicom"].append(header is not None)
        self.media_types[media_type] += 1
        if header is not None:
            self.file_of["dicom_instances"].append(file_index)
            self.dicoms["file_name"].append(file_name)
            for column, value in header.items():
                self.dicoms[column].append(value)
        quarantined = 1 if claimed and header is None else 0
        self.manifest_row(file_index, IMAGE, facts.size_bytes, 1 - quarantined, quarantined)

    def _unreadable(self, relpath: str, entity: str, exc: OSError) -> None:
        # No sha256 without bytes, so the file stays out of the manifest and is retried next run.
        file_index = self.add_file(relpath, "")
        self.quarantine_row(
            file_index, entity, None, None, UNREADABLE_FILE, f"cannot read file: {exc.strerror or exc}", None
        )

    # -- output --

    def batch_id(self) -> str | None:
        """sha256 over the sorted (path, sha256) of the files this chunk lands; None if none."""
        if not self.paths:
            return None
        digest = hashlib.sha256()
        for relpath, sha256 in sorted(zip(self.paths, self.shas, strict=True)):
            digest.update(f"{relpath}\0{sha256}\n".encode())
        return digest.hexdigest()[:32]

    def row_counts(self) -> Counter[str]:
        """Rows landed per data table (quarantine and manifest rows are counted elsewhere)."""
        return Counter({table: len(rows) for table, rows in self.file_of.items() if rows and table in DATA_TABLES})

    def write(self, context: _RunContext, batch_id: str) -> int:
        """Write this chunk's parts (data first, the manifest last); returns how many parts."""
        self._exam_columns()
        paths = pa.array(self.paths, pa.string())
        shas = pa.array(self.shas, pa.string())
        tables = (
            ("exams", raw_schema.EXAMS, self.exams),
            ("exam_labels", raw_schema.EXAM_LABELS, self.labels),
            ("medical_reports", raw_schema.MEDICAL_REPORTS, self.reports),
            ("image_files", raw_schema.IMAGE_FILES, self.images),
            ("dicom_instances", raw_schema.DICOM_INSTANCES, self.dicoms),
            ("quarantine", raw_schema.QUARANTINE, self.quarantine),
            ("landed_files", raw_schema.LANDED_FILES, self.manifest),
        )
        lake = Path(context.lake)
        written = 0
        for table, schema, columns in tables:
            file_of = self.file_of[table]
            if not file_of:
                continue
            rows = len(file_of)
            index = pa.array(file_of, pa.int32())
            arrays = [
                pa.repeat(pa.scalar(batch_id, pa.string()), rows),
                pa.repeat(pa.scalar(context.delivery_date, pa.date32()), rows),
                pa.repeat(pa.scalar(context.ingested_at, raw_schema.UTC_TIMESTAMP), rows),
                paths.take(index),
                shas.take(index),
            ]
            arrays += [_as_array(columns[f.name], f.type) for f in schema if f.name in columns]
            try:
                lake_layout.write_part(
                    lake, table, pa.Table.from_arrays(arrays, schema=schema), context.delivery_date, batch_id
                )
            except OSError as exc:
                raise LakeError(f"cannot write {table} part to {lake}: {exc.strerror or exc}") from exc
            written += 1
        return written


def _read_bytes(path: str) -> bytes:
    """A whole file's bytes with the fewest system calls (no buffered reader for a 2 KB file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) < _READ_SIZE:
            return data
        parts = [data]
        while block := os.read(fd, _READ_SIZE):
            parts.append(block)
        return b"".join(parts)
    finally:
        os.close(fd)


def _read_batch(root: str, relpaths: Sequence[str]) -> list[bytes | OSError]:
    out: list[bytes | OSError] = []
    for relpath in relpaths:
        try:
            out.append(_read_bytes(f"{root}/{relpath}"))
        except OSError as exc:
            out.append(exc)
    return out


def _read_ahead(root: str, relpaths: Sequence[str]) -> Iterator[bytes | OSError]:
    """Each file's bytes in order, read by a few threads ahead of the parser.

    When the delivery is not in the page cache, each read waits on the disk; with one read at
    a time the worker idles (measured: a cold 100 k-exam landing took 13 s with one worker,
    2.5 s warm). The threads keep several reads in flight while the worker parses (reads
    release the GIL). Files go in batches so the per-future overhead stays below 1 us a file.
    """
    batches = [relpaths[i : i + READ_BATCH_FILES] for i in range(0, len(relpaths), READ_BATCH_FILES)]
    if len(batches) <= 1:
        yield from _read_batch(root, relpaths)
        return
    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="medlake-read") as readers:
        for batch in readers.map(_read_batch, itertools.repeat(root), batches):
            yield from batch


def _text_array(values: list[Any]) -> pa.Array:
    """Raw-layer text column from parsed JSON values (see json_records.raw_value).

    Usually every value is already a string or None and Arrow takes the list as-is; only
    when it refuses (a number, bool, list...) is each value stringified in Python.
    """
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        bool_text = _BOOL_TEXT
        return pa.array(
            [v if v.__class__ is str else bool_text[v] if v.__class__ is bool else raw_value(v) for v in values],
            pa.string(),
        )


def _as_array(values: Any, arrow_type: pa.DataType) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values, arrow_type)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _extra_fields(
    record: dict, known_top: frozenset[str], content: dict | None = None, known_content: frozenset[str] = frozenset()
) -> str:
    """The record minus the fields medlake knows, as JSON mirroring its shape.

    e.g. ``{"site": "x", "content": {"priority": 2}}``: unknown top-level fields under their
    own name, unknown ``content`` fields under ``content``.
    """
    extra: dict[str, Any] = {key: value for key, value in record.items() if key not in known_top and key != "content"}
    if content is not None:
        unknown = {key: value for key, value in content.items() if key not in known_content}
        if unknown:
            extra["content"] = unknown
    return compact_json(extra)


def _land_chunk(chunk: tuple[str, Sequence[str]]) -> ChunkResult:
    """Land one chunk (entity, relpaths) and write its parts. Runs in a worker process."""
    context = _CONTEXT
    if context is None:  # pragma: no cover - programming error, not user input
        raise RuntimeError("landing worker used without a run context")
    builder = _ChunkBuilder()
    # The parsed records are millions of small acyclic dicts: reference counting frees them, and
    # the cyclic collector would only re-walk them again and again (it tripled parse time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        entity, relpaths = chunk
        if entity == IMAGE:
            for relpath in relpaths:
                builder.land_image_file(context, relpath)
        else:
            for relpath, data in zip(relpaths, _read_ahead(context.input_root, relpaths), strict=True):
                builder.land_json_file(context, relpath, entity, data)
        batch_id = builder.batch_id()
        parts = builder.write(context, batch_id) if batch_id else 0
    finally:
        if gc_was_enabled:
            gc.enable()
    return ChunkResult(
        files=len(relpaths),
        batch_id=batch_id,
        files_landed=builder.files_landed,
        files_skipped=builder.files_skipped,
        rows=builder.row_counts(),
        records_quarantined=builder.records_quarantined,
        quarantined=Counter(builder.quarantine["reason_code"]),
        media_types=builder.media_types,
        parts_written=parts,
    )


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


def _manifest_parts(lake: Path) -> list[Path]:
    return sorted(lake_layout.raw_dir(lake, "landed_files").glob("delivery_date=*/part-*.parquet"))


def manifest_key(source_file: str, sha256: str) -> bytes:
    """A 16-byte digest of (source_file, sha256): a third of the memory of the text key, and at a
    million landed files the set of keys is what a re-run holds in memory. Collisions at 128 bits
    are out of reach (about 1e-27 for a million files)."""
    return _blake2b(f"{source_file}\0{sha256}".encode(), digest_size=16).digest()


def read_manifest(lake: Path) -> tuple[AbstractSet[bytes], AbstractSet[str]]:
    """(:func:`manifest_key` of every landed file, batch ids that completed) from the manifest."""
    keys: set[bytes] = set()
    batches: set[str] = set()
    for part in _manifest_parts(lake):
        table = pq.read_table(part, columns=["landing_run_id", "source_file", "source_file_sha256"])
        paths, shas = table["source_file"].to_pylist(), table["source_file_sha256"].to_pylist()
        keys.update(map(manifest_key, paths, shas))
        batches.update(pc.unique(table["landing_run_id"]).to_pylist())
    return keys, batches  # not copied into frozensets: at a million keys the copy alone is ~100 MB


def remove_orphan_parts(lake: Path, completed_batches: AbstractSet[str]) -> int:
    """Delete data parts of batches that never wrote their manifest part (an interrupted run)."""
    removed = 0
    for table in BATCHED_TABLES:
        for part in lake_layout.raw_dir(lake, table).glob("delivery_date=*/part-*.parquet"):
            match = _BATCH_PART.match(part.name)
            if match and match.group(1) not in completed_batches:
                part.unlink()
                removed += 1
    return removed


def _chunks(files_by_entity: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Split each entity's sorted file list into chunks: same input, same chunks, same batch ids."""
    chunks: list[tuple[str, list[str]]] = []
    for entity, relpaths in files_by_entity.items():
        size = IMAGE_CHUNK_FILES if entity == IMAGE else JSON_CHUNK_FILES
        chunks.extend((entity, relpaths[start : start + size]) for start in range(0, len(relpaths), size))
    return chunks


def _run_chunks(
    chunks: list[tuple[str, list[str]]], context: _RunContext, workers: int, progress: bool
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
            _init_worker(None)  # type: ignore[arg-type]
        return
    # fork hands the (possibly large) set of known files to workers without pickling it. The
    # workers are forked at the first submit, before the progress bar starts its monitor thread.
    methods = multiprocessing.get_all_start_methods()
    mp_context = multiprocessing.get_context("fork") if "fork" in methods else None
    with ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)),
        mp_context=mp_context,
        initializer=_init_worker,
        initargs=(context,),
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
        context = _RunContext(
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
        for entity in (EXAM, REPORT, IMAGE):
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
