"""The dbt `accepted_values` tests and medlake's StrEnums name the same vocabularies.

`medlake.vocab` is what the Python writes into the raw tables; the dbt YAML is what the build
accepts. A member added on one side only must fail here, before a build fails (or, worse, a
value slips through untested) on a user's lake.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medlake.vocab import Entity, LabelsState, MediaType, QuarantineReason, UploadKind, UploadStatus

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"

QUARANTINED_ENTITIES = {Entity.EXAM, Entity.MEDICAL_REPORT, Entity.EXAM_LABEL, Entity.IMAGE}
LANDED_FILE_ENTITIES = {Entity.EXAM, Entity.MEDICAL_REPORT, Entity.IMAGE}
OTHER_FINDING_TYPES = {
    "report_exam_id_mismatch",
    "report_without_paired_exam",
    "missing_exam_id",
    "invalid_exam_id",
    "missing_body_part",
    "unmapped_body_part",
    "missing_published_at",
    "unmapped_label",
    "invalid_label_value",
    "contradictory_labels",
}

# (YAML file under models/, "source.table" or model name, column) -> the values the Python writes
EXPECTED = {
    ("staging/neuralmed/_neuralmed__sources.yml", "neuralmed.quarantine", "reason_code"): set(QuarantineReason),
    ("staging/neuralmed/_neuralmed__sources.yml", "neuralmed.quarantine", "entity"): QUARANTINED_ENTITIES,
    ("staging/neuralmed/_neuralmed__sources.yml", "neuralmed.landed_files", "entity"): LANDED_FILE_ENTITIES,
    ("staging/neuralmed/_neuralmed__sources.yml", "neuralmed.exams", "labels_state"): set(LabelsState),
    ("staging/imaging/_imaging__sources.yml", "imaging.image_files", "media_type"): set(MediaType),
    ("staging/pacs/_pacs__sources.yml", "pacs.pacs_uploads", "kind"): set(UploadKind),
    ("staging/pacs/_pacs__sources.yml", "pacs.pacs_uploads", "status"): set(UploadStatus),
    ("marts/fct_data_quality.yml", "fct_data_quality", "entity"): QUARANTINED_ENTITIES,
    ("marts/fct_data_quality.yml", "fct_data_quality", "finding_type"): {
        f"quarantined_{entity}" for entity in QUARANTINED_ENTITIES
    }
    | OTHER_FINDING_TYPES,
}


def _columns(document: dict, node: str) -> list[dict]:
    if "." in node:
        source_name, table_name = node.split(".")
        [source] = [s for s in document["sources"] if s["name"] == source_name]
        [table] = [t for t in source["tables"] if t["name"] == table_name]
        return table["columns"]
    [model] = [m for m in document["models"] if m["name"] == node]
    return model["columns"]


def accepted_values(yaml_file: str, node: str, column: str) -> set[str]:
    document = yaml.safe_load((MODELS_DIR / yaml_file).read_text())
    [spec] = [c for c in _columns(document, node) if c["name"] == column]
    tests = [t["accepted_values"] for t in spec.get("data_tests", []) if isinstance(t, dict) and "accepted_values" in t]
    assert len(tests) == 1, f"{node}.{column} has no accepted_values test in {yaml_file}"
    return set(tests[0]["arguments"]["values"])


@pytest.mark.parametrize(("yaml_file", "node", "column"), sorted(EXPECTED), ids=lambda p: str(p))
def test_accepted_values_match_the_python_vocabulary(yaml_file, node, column):
    assert accepted_values(yaml_file, node, column) == {str(v) for v in EXPECTED[(yaml_file, node, column)]}
