"""``dataset.json`` and ``DATASET.md``: what an export holds and how to cite and rebuild it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from medlake import __version__
from medlake.dataset.splits import Split
from medlake.warehouse import build_state

FORMAT = "medlake-dataset/1"
DATASET_JSON = "dataset.json"
DATASET_MD = "DATASET.md"
MANIFEST = "manifest.parquet"
LABEL_POLICY = {
    "1": "positive: every assertion of the label on the exam's current delivery is positive",
    "0": "negative: every assertion is negative",
    "-1": "uncertain: the assertions contradict (at least one positive and one negative)",
    "null": "not labelled: no assertion of the label (assertions whose value is not true/false are ignored)",
}
_OUTCOMES = (("positive", 1), ("negative", 0), ("uncertain", -1))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str | None:
    """The commit of the medlake source that made the export, when it runs from a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def lake_build(lake: Path) -> dict[str, Any]:
    """The warehouse build the export read: an id (digest of the build record) and its times."""
    state = build_state.read(build_state_path(lake))
    if state is None:
        return {"build_id": None, "built_at": None, "landed_until": None}
    record = state.to_dict()
    build_id = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    return {"build_id": build_id, "built_at": record["built_at"], "landed_until": record["landed_until"]}


def build_state_path(lake: Path) -> Path:
    from medlake.lake.layout import warehouse_path

    return warehouse_path(Path(lake))


def label_counts(manifest: pa.Table, labels: tuple[str, ...]) -> dict[str, dict[str, dict[str, int]]]:
    """{label: {split: {positive, negative, uncertain, unlabelled}}}, counted by DuckDB on the manifest."""
    connection = duckdb.connect()
    connection.register("manifest", manifest)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for label in labels:
        column = '"' + label.replace('"', '""') + '"'
        rows = connection.execute(f"select split, {column} as value, count(*) from manifest group by all").fetchall()
        per_split = {
            split.value: {name: 0 for name in ("positive", "negative", "uncertain", "unlabelled")} for split in Split
        }
        names = {value: name for name, value in _OUTCOMES}
        for split, value, count in rows:
            per_split[split][names.get(value, "unlabelled")] += count
        counts[label] = per_split
    connection.close()
    return counts


def split_counts(manifest: pa.Table) -> tuple[dict[str, int], dict[str, int]]:
    """(rows per split, distinct patients per split: pseudonym, or the exam where none)."""
    connection = duckdb.connect()
    connection.register("manifest", manifest)
    rows = dict.fromkeys((split.value for split in Split), 0)
    patients = dict.fromkeys((split.value for split in Split), 0)
    for split, count, groups in connection.execute(
        "select split, count(*), count(distinct coalesce(patient_key, 'exam:' || exam_key)) from manifest group by 1"
    ).fetchall():
        rows[split], patients[split] = count, groups
    connection.close()
    return rows, patients


def write_card(out: Path, card: dict[str, Any]) -> None:
    (out / DATASET_JSON).write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    (out / DATASET_MD).write_text(render_markdown(card), encoding="utf-8")


def render_markdown(card: dict[str, Any]) -> str:
    split = card["split"]
    lines = [
        f"# Training set exported from medlake {card['medlake_version']}",
        "",
        f"- created: {card['created_at']} by `{card['command']}`",
        f"- lake: `{card['lake'].get('path', 'path withheld (de-identified)')}`, "
        f"build `{card['lake']['build_id']}` (built {card['lake']['built_at']})",
        f"- medlake git commit: `{card['git_commit']}`",
        f"- manifest: `{MANIFEST}`, sha256 `{card['manifest']['sha256']}`, {card['rows']} rows",
        f"- filters: `{json.dumps(card['filters'])}`",
        f"- split: train/val/test = {split['shares']}, seed {split['seed']}, by {split['unit']}",
        f"- de-identified: {'yes, ' + card['deidentification']['profile'] if card['deidentified'] else 'NO'}",
        "",
        "| split | rows | patients |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {card['rows_per_split'][name]} | {card['patients_per_split'][name]} |" for name in Split]
    lines += ["", "## Labels (1 positive / 0 negative / -1 uncertain / empty not labelled)", ""]
    lines += ["| label | split | positive | negative | uncertain | not labelled |", "|---|---|---:|---:|---:|---:|"]
    for label, per_split in card["label_counts"].items():
        for name, counts in per_split.items():
            lines.append(
                f"| {label} | {name} | {counts['positive']} | {counts['negative']} | {counts['uncertain']} "
                f"| {counts['unlabelled']} |"
            )
    lines += ["", "Label policy:", ""]
    lines += [f"- `{value}`: {meaning}" for value, meaning in LABEL_POLICY.items()]
    lines += [
        "",
        f"Images: {json.dumps(card['images']['by_status'])}; reports: {card['reports']}.",
        "",
    ]
    if card["deidentified"]:
        deid = card["deidentification"]
        documents = deid["documents"]
        lines += [
            "## De-identification",
            "",
            f"- DICOM: {deid['profile']} with the options {', '.join(deid['options'])} "
            f"(action table: {deid['action_table']}).",
            f"- Dates: {deid['dates']}.",
            f"- Images other than DICOM: {deid['images'].split(': ', 1)[-1]}.",
            f"- Documents (PDF and others): {documents['left_out']} left out; {documents['reason']}.",
            f"- Source (institution) column: {deid['source_column']}.",
            f"- Free text: {deid['free_text']}.",
            f"- PHI check: {deid['phi_check']}.",
            "",
        ]
    else:
        lines += ["NOT de-identified: identifiers, report texts and documents are exported as delivered.", ""]
    return "\n".join(lines)


def created_at() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def version() -> str:
    return __version__
