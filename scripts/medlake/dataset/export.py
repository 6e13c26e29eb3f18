"""``medlake dataset export``: a label filter -> a de-identified, leak-free training set on disk.

Output (``DIR``)::

    manifest.parquet   one row per exam image: ids, pseudonymous patient key, split, labels, paths
    images/            the images (hard links or copies from the object store; DICOMs de-identified)
    reports/           the report text of each exam that has one
    dataset.json       filters, counts per label per split, lake build, versions, manifest sha256
    DATASET.md         the same for people

The export is written to a hidden directory beside ``DIR`` and swapped into place at the end,
so ``DIR`` is either the previous export or the new one, never a mix. A ``DIR`` that exists and
is not a medlake export is refused, never overwritten.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medlake.dataset import card, manifest, privacy
from medlake.dataset.deid.keys import Keys, Subject
from medlake.dataset.files import ImageExporter, ImageOutcome, ImageStatus, ImageTask, method_counts, write_reports
from medlake.dataset.filters import ExportFilters
from medlake.dataset.phi_check import PhiFoundError, check_export
from medlake.dataset.splits import Split, SplitSpec
from medlake.errors import DatasetError
from medlake.lake import pseudonyms


@dataclass(frozen=True)
class ExportSummary:
    """What one export wrote (the CLI prints it; ``dataset.json`` holds the same and more)."""

    out: str
    rows: int
    rows_per_split: dict[str, int]
    patients_per_split: dict[str, int]
    label_counts: dict[str, dict[str, dict[str, int]]]
    images: dict[str, Any]
    reports: int
    deidentified: bool
    manifest_sha256: str
    seconds: float
    card: dict[str, Any] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "rows": self.rows,
            "rows_per_split": self.rows_per_split,
            "patients_per_split": self.patients_per_split,
            "label_counts": self.label_counts,
            "images": self.images,
            "reports": self.reports,
            "deidentified": self.deidentified,
            "manifest_sha256": self.manifest_sha256,
            "seconds": round(self.seconds, 3),
        }

    def render(self) -> str:
        lines = [
            f"exported {self.rows} exam images to {self.out} "
            f"({'de-identified' if self.deidentified else 'NOT de-identified'}, {self.seconds:.1f} s)",
            "  "
            + ", ".join(
                f"{name} {self.rows_per_split[name]} rows / {self.patients_per_split[name]} patients" for name in Split
            ),
            f"  images {self.images['by_status']}  reports {self.reports}",
            f"  {'label':<20} {'split':<6} {'pos':>7} {'neg':>7} {'unc':>7} {'empty':>7}",
        ]
        for label, per_split in self.label_counts.items():
            for name, counts in per_split.items():
                lines.append(
                    f"  {label:<20} {name:<6} {counts['positive']:>7} {counts['negative']:>7} "
                    f"{counts['uncertain']:>7} {counts['unlabelled']:>7}"
                )
        lines.append(f"  manifest sha256 {self.manifest_sha256}")
        return "\n".join(lines)


def export_dataset(
    lake: Path,
    out: Path,
    *,
    filters: ExportFilters | None = None,
    split: SplitSpec | None = None,
    deidentify: bool = True,
    include_documents: bool = False,
    include_source: bool = False,
    report_files: bool = True,
    workers: int | None = None,
    progress: bool = True,
    command: str = "medlake dataset export",
) -> ExportSummary:
    """Export the lake's exams matching ``filters`` to ``out``; see the module docstring."""
    started = time.perf_counter()
    lake, out = Path(lake), Path(out)
    filters, split = filters or ExportFilters(), split or SplitSpec()
    _check_out(out)
    connection = manifest.open_warehouse(lake)
    try:
        filters = replace(filters, labels=manifest.resolve_labels(connection, filters.labels))
        rows = manifest.build_manifest(connection, lake, filters, split, deidentify=deidentify)
        xrv_names = dict(
            connection.execute(
                "select label, xrv_pathology from marts.dim_labels where label in (select unnest(?))",
                [list(filters.labels)],
            ).fetchall()
        )
    finally:
        connection.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        keys = Keys(pseudonyms.pseudonym_key(lake)) if deidentify else None
        known = privacy.known_identifiers(lake, rows) if deidentify else None
        row_subjects: list[Subject | None] = [None] * rows.num_rows
        if keys is not None:
            rows, row_subjects = privacy.deidentify_rows(rows, keys, known, include_source=include_source)
        exporter = ImageExporter(
            staging,
            pseudonym_key=keys.pseudonym_key if keys else None,
            include_documents=include_documents,
            workers=workers,
            progress=progress,
        )
        outcomes = exporter.run(_image_tasks(rows, lake, row_subjects))
        scope_rows = rows.select(["exam_key", "patient_key"])
        rows, dropped = _with_image_columns(rows, outcomes, require_image=filters.require_image)
        if report_files:
            reports = write_reports(staging, rows["report_path"].to_pylist(), rows["report_text"].to_pylist())
        else:  # the texts stay in the manifest's report_text column
            rows = rows.set_column(
                rows.schema.get_field_index("report_path"), "report_path", pa.nulls(rows.num_rows, pa.string())
            )
            reports = 0
        manifest_path = staging / card.MANIFEST
        pq.write_table(rows, manifest_path, compression="zstd")
        manifest_sha256 = card.sha256_file(manifest_path)
        rows_per_split, patients_per_split = card.split_counts(rows)
        label_counts = card.label_counts(rows, filters.labels)
        images = {
            "by_status": dict(Counter(rows["image_status"].to_pylist())),
            "by_method": method_counts(outcomes),
            "dropped_by_require_image": dropped,
        }
        dataset_card = _card(
            lake,
            filters,
            split,
            deidentify,
            command,
            rows,
            manifest_sha256,
            images,
            reports,
            xrv_names,
            include_documents=include_documents,
            include_source=include_source,
        )
        dataset_card |= {
            "report_files": report_files,
            "rows_per_split": rows_per_split,
            "patients_per_split": patients_per_split,
            "label_counts": label_counts,
        }
        card.write_card(staging, dataset_card)
        if keys is not None:
            scope = privacy.check_scope(
                known, scope_rows, keys, include_source=include_source, file_exams=file_exams(rows)
            )
            findings = check_export(staging, scope)
            if findings:
                raise PhiFoundError(findings, f"export not published to {out}")
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportSummary(
        out=str(out),
        rows=rows.num_rows,
        rows_per_split=rows_per_split,
        patients_per_split=patients_per_split,
        label_counts=label_counts,
        images=images,
        reports=reports,
        deidentified=deidentify,
        manifest_sha256=manifest_sha256,
        seconds=time.perf_counter() - started,
        card=dataset_card,
    )


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / card.DATASET_JSON).is_file():
        raise DatasetError(f"{out} is not empty and holds no {card.DATASET_JSON}: not a medlake export, not touched")


def file_exams(rows: pa.Table) -> dict[str, str]:
    """Which exam each image and report file of the export belongs to (the PHI check's date scope)."""
    owners: dict[str, str] = {}
    for column in ("image_path", "report_path"):
        if column in rows.schema.names:
            for path, exam in zip(rows[column].to_pylist(), rows["exam_key"].to_pylist(), strict=True):
                if path:
                    owners[path] = exam
    return owners


def _image_tasks(rows: pa.Table, lake: Path, subjects: list[Subject | None]) -> list[ImageTask]:
    names = ["planned_image_path", "object_relative_path", "orthanc_instance_id", "is_dicom", "image_media_type"]
    columns = rows.select(names)
    tasks = []
    lake_root = str(lake.resolve())
    for row, (destination, relative, instance, is_dicom, media_type) in enumerate(
        zip(*columns.to_pydict().values(), strict=True)
    ):
        if destination is None:
            continue
        object_path = os.path.join(lake_root, relative) if relative else None
        tasks.append(ImageTask(row, destination, object_path, instance, bool(is_dicom), media_type, subjects[row]))
    return tasks


def _with_image_columns(
    rows: pa.Table, outcomes: list[ImageOutcome], *, require_image: bool
) -> tuple[pa.Table, dict[str, int]]:
    """Manifest columns image_path/image_status from the outcomes; under --require-image, rows without one go."""
    statuses = [ImageStatus.NO_IMAGE.value] * rows.num_rows
    for outcome in outcomes:
        statuses[outcome.row] = outcome.status.value
    planned = rows["planned_image_path"].to_pylist()
    paths = [path if status == ImageStatus.EXPORTED else None for path, status in zip(planned, statuses, strict=True)]
    published = rows.drop_columns(list(manifest.INTERNAL_COLUMNS))
    position = published.schema.get_field_index("image_media_type")
    published = published.add_column(position, "image_path", pa.array(paths, pa.string()))
    published = published.add_column(position + 2, "image_status", pa.array(statuses, pa.string()))
    dropped: dict[str, int] = {}
    if require_image:
        keep = pa.array([status == ImageStatus.EXPORTED for status in statuses])
        dropped = dict(Counter(status for status in statuses if status != ImageStatus.EXPORTED))
        published = published.filter(keep)
    return published, dropped


def _card(
    lake: Path,
    filters: ExportFilters,
    split: SplitSpec,
    deidentify: bool,
    command: str,
    rows: pa.Table,
    manifest_sha256: str,
    images: dict[str, Any],
    reports: int,
    xrv_names: dict[str, str | None],
    *,
    include_documents: bool,
    include_source: bool,
) -> dict[str, Any]:
    from medlake.dataset import deid

    left_out = images["by_status"].get("left_out_document", 0)
    filters_recorded = filters.to_dict()
    if deidentify and not include_source and filters_recorded.get("sources"):
        filters_recorded["sources"] = f"[{len(filters.sources)} source name(s) withheld: --include-source not given]"
    return {
        "format": card.FORMAT,
        "created_at": card.created_at(),
        "command": command,
        "medlake_version": card.version(),
        "git_commit": card.git_commit(),
        # a lake's path often names the hospital: kept only when identifiers are
        "lake": ({} if deidentify else {"path": str(lake.resolve())}) | card.lake_build(lake),
        "filters": filters_recorded,
        "split": {
            "shares": split.as_text(),
            "seed": split.seed,
            "unit": "patient (pseudonymous key; the exam where no patient is known)",
            "method": "u = int(sha256(f'{seed}:{group}')[:13 hex], 16) / 16**13; train if u < train, "
            "val if u < train + val, else test (stable when exams are added)",
        },
        "deidentified": deidentify,
        "deidentification": {
            "library": deid.LIBRARY,
            "library_version": card.version(),
            "profile": deid.PROFILE,
            "action_table": deid.SOURCE,
            "options": list(deid.OPTIONS),
            "method_codes": [
                {"code_value": code, "coding_scheme": "DCM", "code_meaning": meaning}
                for code, meaning in deid.METHOD_CODES
            ],
            "patient_key": "HMAC-SHA-256 pseudonym with the lake's key (medlake.lake.pseudonyms)",
            "dates": "shifted by one offset per patient (pseudonym; the exam where no patient is known), "
            "365 to 3652 days back, an HMAC of the lake's key: DICOM dates, manifest published_at, dates in reports",
            "images": "DICOM: the profile's action table; PNG/JPEG/GIF/TIFF: re-encoded from pixels, no metadata",
            "documents": {
                "included": include_documents,
                "left_out": left_out,
                "reason": "PDFs and other documents cannot be de-identified automatically"
                if not include_documents
                else "--include-documents: exported UNCHANGED, identifiers in them are not removed",
            },
            "source_column": "included (--include-source)" if include_source else "left out (institution names)",
            "free_text": "report texts are scrubbed of every identifier the lake knows for the exam (patient "
            "names and IDs from its DICOMs, accession numbers, labeller and reporter names, source names) and "
            "their dates shifted; free text is NOT guaranteed free of other PHI",
            "phi_check": "passed: no identifier the lake holds for the exported patients found in any file",
        }
        if deidentify
        else {"library": None, "note": "--no-deidentify: identifiers kept, for use inside the hospital only"},
        "labels": list(filters.labels),
        "label_xrv_pathologies": {label: xrv_names.get(label) for label in filters.labels},
        "label_policy": card.LABEL_POLICY,
        "rows": rows.num_rows,
        "images": images,
        "reports": reports,
        "manifest": {"file": card.MANIFEST, "sha256": manifest_sha256, "columns": rows.schema.names},
    }


def _swap_into_place(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` with two renames (the old export is removed afterwards)."""
    if not out.exists():
        os.replace(staging, out)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{out.name}.previous-", dir=out.parent))
    previous.rmdir()
    os.replace(out, previous)
    os.replace(staging, out)
    shutil.rmtree(previous, ignore_errors=True)
