"""``medlake synth``: a deterministic synthetic delivery in exactly the raw shape, with every quirk.

Layout written under ``OUT``::

    exam/<uuid>.json             1-4 exam records per file (array, single object or JSON lines)
    medical_report/<uuid>.json   one report per exam, same file name, same position
    images/<SOPInstanceUID>.dcm  small synthetic chest CRs for the first K exams
    synth_summary.json           the ground truth (counts and expected answers), no wall time

Same seed -> same bytes. The exams are generated in blocks of :data:`BLOCK_EXAMS` records;
each block has its own random stream seeded from (seed, block index), so blocks are
generated in parallel worker processes and the output does not depend on the worker count.
The main process creates the blocks' files in block order (one writer per directory is
faster than two). Memory stays flat as ``exams`` grows: a few blocks are in flight at a time.

Exam files hold 1-4 exams (mean 2, so a million exams are about 500 k exam files, like real
deliveries), or with ``records_per_file=N`` up to N (at most a block's :data:`BLOCK_EXAMS`; arrays,
and JSON lines for a share of them), as hospital bulk exports come: 10 M exams take ~39 GB of disk
blocks as 5 M small files and ~11 GB as 20 k files of 1,000. The ids are 1..N in record order,
re-delivery slots reuse an earlier id. The
first K exams (``dicom_exams``) get a chest body_part and a DICOM named after the SOP
Instance UID their ``image_path`` ends with (``gs://medlake-synth/chest/<uid>.dcm``).

What a delivery looks like (shares are per record unless noted):

* ``id`` an int, or a numeric string (15%), or missing (0.3%);
* ``source`` a string or a one-element list (70%); a few fields missing (0.3% each);
* classification spellings (``covid19``, ``Covid19``, ``COVID-19``, ``covid``, ``pneumonia``,
  ``Pneumonia``, ``Hernia``, ``hernia``, ...), body_part spellings (``CHEST``, ``Chest``, ``chest``,
  ``BREAST``, ...), label ``value`` a bool or ``"True"``/``"false"``/... text;
* ``labels`` absent (1%) or null (1%), 0-8 labels otherwise;
* re-deliveries: 2% of a block's records re-deliver an earlier exam of the block in a later
  file, with a later ``publication_timestamp`` and new labels;
* per block, with probability 5% (always in block 0): an invalid JSON exam file, a record
  without ``content``, a label element that is a string, an empty exam file and a
  whitespace-only report file. Some files are JSON lines or a single object.

``exams`` counts the landable exam records (originals + re-deliveries); injected bad
records come on top. The expected answers in the summary use these semantics: the latest
delivery (by ``publication_timestamp``) of each exam id; classification canonicalised
(``covid19``/``COVID-19``/``covid`` -> covid); a label is positive when its value is ``true`` in
any spelling; an exam's month is its latest publication month (UTC). Exams without an id
never carry a positive covid label, so the answer does not depend on how they are treated.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from medlake.devtools.synth_block import _redeliveries, _write_block
from medlake.devtools.synth_dicom import write_chest_cr, write_chest_cr_series
from medlake.devtools.synth_records import _BlockSpec, _BlockStats
from medlake.devtools.synth_tables import (
    _CANONICAL_CLASS,
    CLASSIFICATIONS,
    INCREMENT_REDELIVERY_SHARE,
    REDELIVERY_SHARE,
    _is_positive,
    uid_for,
)
from medlake.errors import SynthError
from medlake.processes import die_with_parent

# Re-exported: the generator's vocabulary, for tests and benchmarks that check against it.
__all__ = [
    "CLASSIFICATIONS",
    "SUMMARY_FILE",
    "_CANONICAL_CLASS",
    "SynthSummary",
    "_is_positive",
    "generate",
    "generate_increment",
    "uid_for",
    "write_chest_cr",
    "write_chest_cr_series",
]

BLOCK_EXAMS = 1_000
SUMMARY_FILE = "synth_summary.json"
DEFAULT_DICOM_EXAMS = 24


# --- the run -----------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSummary:
    """What ``medlake synth`` wrote, and the ground truth a landing of it must reproduce."""

    out: str
    seed: int
    exam_records: int  # landable exam records (originals + re-deliveries) == exams landed
    distinct_exam_ids: int
    exams_without_id: int
    redelivered_records: int
    report_records: int
    report_exam_id_mismatches: int
    exam_files: int
    report_files: int
    dicom_files: int
    json_lines_files: int
    single_object_files: int
    empty_files: int
    whitespace_files: int
    invalid_json_files: int  # quarantined whole (record_position NULL)
    records_without_content: int  # quarantined with their position
    label_not_object: int  # label elements quarantined as exam_label (their exams land)
    label_objects: int  # label objects in all landable records == exam_labels rows landed
    label_objects_latest: int
    chest_exams_with_6plus_labels: int
    covid_without_pneumonia_by_month: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def quarantine_rows_expected(self) -> int:
        return self.invalid_json_files + self.records_without_content + self.label_not_object

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["covid_without_pneumonia_by_month"] = dict(sorted(self.covid_without_pneumonia_by_month.items()))
        data["quarantine_rows_expected"] = self.quarantine_rows_expected
        data["seconds"] = round(self.seconds, 3)
        return data

    def ground_truth(self) -> dict[str, Any]:
        """to_dict() without the wall time: what ``synth_summary.json`` holds (same seed, same bytes)."""
        data = self.to_dict()
        del data["seconds"], data["out"]
        return data

    def render(self) -> str:
        rows = [
            ("exam records (landable)", self.exam_records),
            ("  distinct exam ids", self.distinct_exam_ids),
            ("  re-delivered records", self.redelivered_records),
            ("  without id", self.exams_without_id),
            ("report records", self.report_records),
            ("exam files", self.exam_files),
            ("report files", self.report_files),
            ("DICOM files (images/)", self.dicom_files),
            ("JSON-lines / single-object files", f"{self.json_lines_files} / {self.single_object_files}"),
            ("empty / whitespace-only files", f"{self.empty_files} / {self.whitespace_files}"),
            ("injected: invalid JSON files", self.invalid_json_files),
            ("injected: records without content", self.records_without_content),
            ("injected: label elements not objects", self.label_not_object),
            ("quarantine rows expected", self.quarantine_rows_expected),
        ]
        lines = [f"synth seed={self.seed} -> {self.out}"]
        lines += [f"  {name:<36} {value:>10}" for name, value in rows]
        december = self.covid_without_pneumonia_by_month.get("2021-12", 0)
        lines.append(f"  {'covid w/o pneumonia, 2021-12 (exam)':<36} {december:>10}")
        lines.append(f"  took {self.seconds:.2f} s")
        return "\n".join(lines)


def _generate_blocks(specs: list[_BlockSpec], workers: int) -> Iterator[_BlockStats]:
    """Each block's stats and file bytes, in block order; generated by worker processes when it pays.

    At most a few blocks per worker are in flight, so memory stays flat however many exams.
    """
    if workers <= 1 or len(specs) <= 2:
        yield from map(_write_block, specs)
        return
    methods = multiprocessing.get_all_start_methods()
    in_flight: deque[Future[_BlockStats]] = deque()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(specs)),
        mp_context=multiprocessing.get_context("fork") if "fork" in methods else None,
        initializer=die_with_parent,  # a killed synth leaves no worker behind
        initargs=(os.getpid(),),
    ) as pool:
        pending = iter(specs)
        try:
            for spec in itertools.islice(pending, 4 * workers):
                in_flight.append(pool.submit(_write_block, spec))
            while in_flight:
                stats = in_flight.popleft().result()
                for spec in itertools.islice(pending, 1):
                    in_flight.append(pool.submit(_write_block, spec))
                yield stats
        finally:
            for future in in_flight:
                future.cancel()


def _create_files(out: Path, files: list[tuple[str, bytes]]) -> None:
    """Create a block's JSON files. One process creates all of them: two processes creating files
    in one ext4 directory contend on its lock (on the dev VM, 200 k exams took 24 s with two writers
    and 8 s with one), while generating the bytes is the part that parallelises well."""
    root = str(out)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        for relpath, data in files:
            fd = os.open(f"{root}/{relpath}", flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    except OSError as exc:
        raise SynthError(f"cannot write to {out}: {exc.strerror or exc}") from exc


def _plan(
    out: Path,
    exams: int,
    seed: int,
    dicom_exams: int,
    *,
    identity_seed: int,
    base_exams: int = 0,
    base_dicom_exams: int = 0,
    records_per_file: int = 0,
) -> list[_BlockSpec]:
    specs = []
    dicom_left = dicom_exams
    share = INCREMENT_REDELIVERY_SHARE if base_exams else REDELIVERY_SHARE
    for block, offset in enumerate(range(0, exams, BLOCK_EXAMS)):
        records = min(BLOCK_EXAMS, exams - offset)
        redeliveries = _redeliveries(records, share)
        dicom_here = min(dicom_left, records - redeliveries)
        dicom_left -= dicom_here
        specs.append(
            _BlockSpec(
                str(out),
                seed,
                block,
                base_exams + offset,
                records,
                redeliveries,
                dicom_here,
                identity_seed,
                base_exams,
                base_dicom_exams,
                records_per_file,
            )
        )
    return specs


def _prepare_out(out: Path) -> None:
    """Create ``out``; an earlier synth output there is replaced, anything else is refused."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"output path exists and is not a directory: {out}")
    if out.exists() and any(out.iterdir()):
        if not (out / SUMMARY_FILE).is_file():
            raise SynthError(f"output directory {out} is not empty and was not written by medlake synth; pick another")
        for name in ("exam", "medical_report", "images", SUMMARY_FILE):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        for name in ("exam", "medical_report", "images"):
            (out / name).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SynthError(f"cannot write to {out}: {exc.strerror or exc}") from exc


def generate(
    out: Path,
    *,
    exams: int,
    seed: int = 42,
    dicom_exams: int | None = None,
    progress: bool = True,
    workers: int | None = None,
    records_per_file: int = 0,
) -> SynthSummary:
    """Write a synthetic delivery of ``exams`` landable exam records to ``out``.

    ``records_per_file`` > 0: files of that many records (at most :data:`BLOCK_EXAMS`), else 1-4.
    """
    if exams < 1:
        raise SynthError(f"exams must be >= 1, got {exams}")
    _check_records_per_file(records_per_file)
    dicom_exams = min(DEFAULT_DICOM_EXAMS, exams) if dicom_exams is None else dicom_exams
    if dicom_exams < 0:
        raise SynthError(f"dicom_exams must be >= 0, got {dicom_exams}")
    specs = _plan(Path(out), exams, seed, dicom_exams, identity_seed=seed, records_per_file=records_per_file)
    return _generate(Path(out), specs, seed=seed, progress=progress, workers=workers)


def generate_increment(
    out: Path,
    *,
    exams: int,
    seed: int,
    base_exams: int,
    base_seed: int | None = None,
    base_dicom_exams: int | None = None,
    dicom_exams: int = 0,
    progress: bool = False,
    workers: int | None = None,
    records_per_file: int = 0,
) -> SynthSummary:
    """Write a later delivery on top of a base written by ``generate(exams=base_exams, seed=base_seed)``.

    ``exams`` landable records: new exams (ids after ``base_exams``) and 10% re-deliveries of
    base exam ids with new labels, all published in the 30 days after anything in the base.
    With the base's seed (``base_seed``), re-delivered exams keep their id spelling, source,
    body part and image path exactly; without it they are only the same ids. File names never
    collide with the base's. ``base_dicom_exams`` defaults like ``generate``'s ``dicom_exams``.
    """
    if exams < 1 or base_exams < 1:
        raise SynthError(f"exams and base_exams must be >= 1, got {exams} and {base_exams}")
    if dicom_exams < 0:
        raise SynthError(f"dicom_exams must be >= 0, got {dicom_exams}")
    _check_records_per_file(records_per_file)
    base_dicom = min(DEFAULT_DICOM_EXAMS, base_exams) if base_dicom_exams is None else base_dicom_exams
    identity_seed = seed if base_seed is None else base_seed
    specs = _plan(
        Path(out),
        exams,
        seed,
        dicom_exams,
        identity_seed=identity_seed,
        base_exams=base_exams,
        base_dicom_exams=base_dicom,
        records_per_file=records_per_file,
    )
    return _generate(Path(out), specs, seed=seed, progress=progress, workers=workers)


def _check_records_per_file(records_per_file: int) -> None:
    if not 0 <= records_per_file <= BLOCK_EXAMS:
        raise SynthError(f"records per file must be between 1 and {BLOCK_EXAMS} (0: 1-4), got {records_per_file}")


def _generate(out: Path, specs: list[_BlockSpec], *, seed: int, progress: bool, workers: int | None) -> SynthSummary:
    from tqdm import tqdm

    started = time.perf_counter()
    exams = sum(spec.records for spec in specs)
    _prepare_out(out)
    workers = workers or os.cpu_count() or 1
    counts: Counter[str] = Counter()
    months: Counter[str] = Counter()
    with tqdm(total=exams, unit="exam", desc="synth", disable=not progress, mininterval=0.5) as bar:
        for spec, stats in zip(specs, _generate_blocks(specs, workers), strict=True):
            _create_files(out, stats.files)
            counts.update(stats.counts)
            months.update(stats.covid_without_pneumonia)
            bar.update(spec.records)
    summary = SynthSummary(
        out=str(out),
        seed=seed,
        exam_records=counts["exam_records"],
        distinct_exam_ids=counts["distinct_exam_ids"],
        exams_without_id=counts["exams_without_id"],
        redelivered_records=counts["redelivered_records"],
        report_records=counts["report_records"],
        report_exam_id_mismatches=counts["report_exam_id_mismatches"],
        exam_files=counts["exam_files"],
        report_files=counts["medical_report_files"],
        dicom_files=counts["images_files"],
        json_lines_files=counts["json_lines_files"],
        single_object_files=counts["object_files"],
        empty_files=counts["empty_files"],
        whitespace_files=counts["whitespace_files"],
        invalid_json_files=counts["invalid_json_files"],
        records_without_content=counts["records_without_content"],
        label_not_object=counts["label_not_object"],
        label_objects=counts["label_objects"],
        label_objects_latest=counts["label_objects_latest"],
        chest_exams_with_6plus_labels=counts["chest_exams_with_6plus_labels"],
        covid_without_pneumonia_by_month=dict(sorted(months.items())),
        seconds=time.perf_counter() - started,
    )
    (out / SUMMARY_FILE).write_bytes(orjson.dumps(summary.ground_truth(), option=orjson.OPT_INDENT_2) + b"\n")
    return summary
