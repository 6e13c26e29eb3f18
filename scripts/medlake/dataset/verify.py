"""``medlake dataset verify-deid DIR --lake LAKE``: the export's PHI check, run on any export."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from medlake.dataset import card, manifest, privacy
from medlake.dataset.deid.keys import Keys
from medlake.dataset.export import file_exams
from medlake.dataset.filters import ExportFilters
from medlake.dataset.phi_check import Finding, check_export
from medlake.dataset.splits import SplitSpec
from medlake.errors import DatasetError
from medlake.lake import pseudonyms


def verify_export(directory: Path, lake: Path) -> list[Finding]:
    """Every identifier ``lake`` holds for the exported patients that is found in ``directory``."""
    directory, lake = Path(directory), Path(lake)
    manifest_path = directory / card.MANIFEST
    if not manifest_path.is_file():
        raise DatasetError(f"{directory} holds no {card.MANIFEST}: not a medlake export")
    published = pq.read_table(manifest_path)
    try:
        recorded = json.loads((directory / card.DATASET_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    include_source = "source" in published.schema.names
    connection = manifest.open_warehouse(lake)
    try:
        labels = manifest.resolve_labels(connection, ())
        everything = ExportFilters(labels=labels, include_unlabelled=True)
        rows = manifest.build_manifest(connection, lake, everything, SplitSpec(), deidentify=True)
    finally:
        connection.close()
    rows = rows.filter(pc.is_in(rows["exam_key"], published["exam_key"]))
    if rows.num_rows < len(set(published["exam_key"].to_pylist())):
        raise DatasetError(
            f"{directory} names exams {lake} does not hold: was it exported from another lake? "
            f"(export of lake build {recorded.get('lake', {}).get('build_id')})"
        )
    keys = Keys(pseudonyms.pseudonym_key(lake, create=False))
    known = privacy.known_identifiers(lake, rows)
    scope = privacy.check_scope(
        known,
        rows.select(["exam_key", "patient_key"]),
        keys,
        include_source=include_source,
        file_exams=file_exams(published),
    )
    return check_export(directory, scope)
