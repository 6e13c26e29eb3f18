"""The export's manifest as one DuckDB query over the marts: one row per exam image.

Nothing here loops over exams in Python: the filters, the label pivot (CheXpert convention), the
patient pseudonyms and the split are SQL over ``fct_exams``, ``int_exam_label_assertions``,
``dim_images``, ``fct_medical_reports`` (and ``fct_predictions``), so a million-exam lake gives
its manifest in seconds. The only per-patient Python is the keyed pseudonym itself (HMAC with the
lake's secret key, :mod:`medlake.lake.pseudonyms`), computed once per distinct patient.

Label policy (per exam and label, over the label assertions of the exam's current delivery;
assertions whose value could not be read as true/false are ignored), as dbt's
``int_exam_label_assertions.label_value`` defines it - the rule is written there only:

* ``1``  every assertion is positive;
* ``0``  every assertion is negative;
* ``-1`` (uncertain) the assertions contradict (at least one positive and one negative);
* empty (null) the exam has no assertion of that label.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa

from medlake.dataset.filters import ExportFilters
from medlake.dataset.splits import SplitSpec, split_sql
from medlake.errors import DatasetError
from medlake.lake import pseudonyms
from medlake.lake.layout import raw_dir, warehouse_path
from medlake.warehouse import sql_text

# Columns the file stage needs and the published manifest does not carry.
INTERNAL_COLUMNS = (
    "object_relative_path",
    "orthanc_instance_id",
    "is_dicom",
    "planned_image_path",
    "source_patient_id",  # the DICOM's Patient ID, for the PHI check only (never published de-identified)
)
_EXTENSIONS = {
    "application/dicom": ".dcm",
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/tiff": ".tif",
}


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def prediction_column(label: str) -> str:
    return f"pred_{label}"


def open_warehouse(lake: Path) -> duckdb.DuckDBPyConnection:
    """The lake's warehouse, read-only (an export never blocks or changes a build)."""
    path = warehouse_path(Path(lake))
    if not path.is_file():
        raise DatasetError(f"no warehouse at {path}: run `medlake build --lake {lake}` first")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise DatasetError(f"cannot open the warehouse {path}: {exc}") from exc


def resolve_labels(connection: duckdb.DuckDBPyConnection, requested: tuple[str, ...]) -> tuple[str, ...]:
    """Canonical spellings of the requested labels (case-insensitive); all asserted labels when none asked."""
    asserted = [row[0] for row in connection.execute(_KNOWN_LABELS_SQL).fetchall()]
    if not requested:
        if not asserted:
            raise DatasetError("the lake has no label assertions yet: nothing to export")
        return tuple(asserted)
    vocabulary = {
        row[0].lower(): row[0]
        for row in connection.execute(
            "select label from marts.dim_labels union select unnest(?)", [asserted]
        ).fetchall()
    }
    unknown = [label for label in requested if label.lower() not in vocabulary]
    if unknown:
        raise DatasetError(
            f"unknown label(s) {', '.join(unknown)}; labels with assertions in this lake: {', '.join(asserted)}"
        )
    return tuple(dict.fromkeys(vocabulary[label.lower()] for label in requested))


def check_model(connection: duckdb.DuckDBPyConnection, model: str) -> None:
    models = [row[0] for row in connection.execute(_MODELS_SQL).fetchall()]
    if model not in models:
        shown = ", ".join(models) or "none (run `medlake pacs run` first)"
        raise DatasetError(f"no predictions by model {model!r} in this lake; models with predictions: {shown}")


def build_manifest(
    connection: duckdb.DuckDBPyConnection,
    lake: Path,
    filters: ExportFilters,
    split: SplitSpec,
    *,
    deidentify: bool,
) -> pa.Table:
    """The manifest (plus the INTERNAL_COLUMNS) as an Arrow table, ordered by split then exam_key."""
    _check_marts(connection, Path(lake))
    _register_raw_views(connection, Path(lake))
    _register_pseudonyms(connection, Path(lake))
    if filters.with_predictions:
        check_model(connection, filters.with_predictions)
    sql, params = _manifest_sql(filters, split, deidentify=deidentify)
    try:
        return connection.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise DatasetError(f"the manifest query failed on the warehouse of {lake}: {exc}") from exc


def extension_for(media_type: str | None) -> str:
    return _EXTENSIONS.get(media_type or "application/dicom", ".bin")


# --- the pieces of the query ------------------------------------------------------------

_KNOWN_LABELS_SQL = """
    select label from marts.bridge_exam_labels
    where is_positive is not null
    group by label
    order by count(*) desc, label
"""

_MODELS_SQL = "select distinct model_name from marts.fct_predictions order by 1"


# Mart columns the export reads that older builds lack: a clear "rebuild" beats a binder error.
_REQUIRED_COLUMNS = {
    ("marts", "dim_images"): ("object_path", "orthanc_instance_id", "is_in_pacs"),
    ("intermediate", "int_exam_label_assertions"): ("label_value",),
}


def _check_marts(connection: duckdb.DuckDBPyConnection, lake: Path) -> None:
    for (schema, table), columns in _REQUIRED_COLUMNS.items():
        present = {
            row[0]
            for row in connection.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [schema, table],
            ).fetchall()
        }
        absent = [column for column in columns if column not in present]
        if absent:
            raise DatasetError(
                f"the warehouse of {lake} was built by an older medlake ({schema}.{table} lacks {', '.join(absent)}): "
                f"run `medlake build --lake {lake}` first"
            )


def _raw_parts(lake: Path, table: str) -> list[str]:
    directory = raw_dir(lake, table)
    parts = sorted(str(path) for path in directory.glob("delivery_date=*/*.parquet"))
    return parts or [str(directory / "schema.parquet")]


def _register_raw_views(connection: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """The latest DICOM header of each image name, straight from the raw layer.

    The raw layer keeps the Patient ID as delivered (marts carry only pseudonyms); it is read here
    once, turned into a pseudonym, and never written to the export unless --no-deidentify.
    """
    latest = "qualify row_number() over (partition by file_name order by ingested_at desc, source_file desc) = 1"
    connection.execute(
        "create or replace temp view export_dicom_patients as select file_name, patient_id "
        f"from {_read_parquet(_raw_parts(lake, 'dicom_instances'))} {latest}"
    )


def _read_parquet(paths: list[str]) -> str:
    # A view cannot take bound parameters: the lake's own file paths go in as literals made by sql_text.
    listed = ", ".join(sql_text.string_literal(sql_text.glob_escape(path)) for path in paths)
    return f"read_parquet([{listed}], union_by_name = true)"


def _register_pseudonyms(connection: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """patient_id -> pseudonym for every distinct patient, with exactly the lake's key and HMAC."""
    patient_ids = [
        row[0]
        for row in connection.execute(
            "select distinct patient_id from export_dicom_patients where nullif(trim(patient_id), '') is not null"
        ).fetchall()
    ]
    key = pseudonyms.pseudonym_key(lake)
    table = pa.table(
        {
            "patient_id": pa.array(patient_ids, pa.string()),
            "patient_key": pa.array([pseudonyms.pseudonymise(key, value) for value in patient_ids], pa.string()),
        }
    )
    connection.register("export_patient_pseudonyms", table)


def _exam_conditions(filters: ExportFilters) -> tuple[list[str], list[object]]:
    conditions: list[str] = []
    params: list[object] = []
    if filters.body_part:
        conditions.append("lower(body_part) = lower(?)")
        params.append(filters.body_part)
    if filters.published_from:
        conditions.append("published_at >= ?")
        params.append(dt.datetime.combine(filters.published_from, dt.time()))
    if filters.published_to:
        conditions.append("published_at < ?")
        params.append(dt.datetime.combine(filters.published_to + dt.timedelta(days=1), dt.time()))
    if filters.sources:
        conditions.append("lower(source) in (select lower(unnest(?)))")
        params.append(list(filters.sources))
    return conditions, params


def _manifest_sql(filters: ExportFilters, split: SplitSpec, *, deidentify: bool) -> tuple[str, list[object]]:
    labels = list(filters.labels)
    exam_conditions, params = _exam_conditions(filters)
    pivot = ",\n            ".join(
        f"max(label_value) filter (where label = ?) as {quote_identifier(label)}" for label in labels
    )
    params += [labels, *labels]
    label_join = "left join" if filters.include_unlabelled else "inner join"
    prediction_ctes = prediction_columns = prediction_join = ""
    if filters.with_predictions:
        scores = ",\n            ".join(
            f"max(score) filter (where label = ? and run_rank = 1) as {quote_identifier(prediction_column(label))}"
            for label in labels
        )
        prediction_ctes = f""",
        model_predictions as (
            select image_key, label, score, weights_trained,
                row_number() over (partition by image_key, pathology order by predicted_at desc, run_id desc)
                    as run_rank
            from marts.fct_predictions
            where model_name = ?
        ),
        prediction_scores as (
            select image_key,
            {scores},
            bool_and(weights_trained) filter (where run_rank = 1) as pred_weights_trained
            from model_predictions
            group by image_key
        )"""
        params += [filters.with_predictions, *labels]
        prediction_columns = "".join(
            f", prediction_scores.{quote_identifier(prediction_column(label))}" for label in labels
        )
        prediction_columns += ", prediction_scores.pred_weights_trained"
        prediction_join = "inner join prediction_scores on images.image_key = prediction_scores.image_key"
    label_columns = "".join(f", exam_labels.{quote_identifier(label)}" for label in labels)
    group = "coalesce(patients.patient_key, 'exam:' || exams.exam_key)"
    patient_id_column = "" if deidentify else "patients.patient_id,"
    image_condition = (
        "and (images.object_path is not null or coalesce(images.is_in_pacs, false))" if filters.require_image else ""
    )
    extension = " ".join(f"when '{media}' then '{ext}'" for media, ext in _EXTENSIONS.items())
    sql = f"""
        with
        exams as (
            select exam_key, exam_id, source, body_part, published_at, image_file_name
            from marts.fct_exams
            {"where " + " and ".join(exam_conditions) if exam_conditions else ""}
        ),
        assertions as (
            -- the CheXpert value as dbt defines it, contradiction rule included (one place: the model)
            select exam_key, label, label_value
            from intermediate.int_exam_label_assertions
            where label in (select unnest(?)) and label_value is not null
        ),
        exam_labels as (
            select exam_key,
            {pivot}
            from assertions
            group by exam_key
        ),
        images as (
            select
                dim.image_key, dim.file_name, dim.media_type, dim.is_dicom, dim.modality, dim.view_position,
                dim.orthanc_instance_id, dim.is_in_pacs, dim.object_path
            from marts.dim_images as dim
        ),
        patients as (
            select dicoms.file_name, dicoms.patient_id, pseudonyms.patient_key
            from export_dicom_patients as dicoms
            inner join export_patient_pseudonyms as pseudonyms on dicoms.patient_id = pseudonyms.patient_id
        ),
        reports as (
            select exam_key, report_text
            from marts.fct_medical_reports
            where exam_key is not null
            qualify row_number() over (
                partition by exam_key order by report_date desc nulls last, report_key
            ) = 1
        ){prediction_ctes},
        joined as (
            select
                exams.exam_key,
                exams.exam_id,
                patients.patient_key,
                {patient_id_column}
                {split_sql(group, split)} as split,
                exams.source,
                exams.body_part,
                images.view_position,
                images.modality,
                exams.published_at,
                case when images.object_path is not null or coalesce(images.is_in_pacs, false)
                    then 'images/' || exams.exam_key
                        || case coalesce(images.media_type, 'application/dicom') {extension} else '.bin' end
                end as planned_image_path,
                images.media_type as image_media_type,
                case when reports.report_text is not null then 'reports/' || exams.exam_key || '.txt' end
                    as report_path,
                reports.report_text
                {label_columns}
                {prediction_columns},
                images.object_path as object_relative_path,
                images.orthanc_instance_id,
                coalesce(images.is_dicom, images.is_in_pacs, false) as is_dicom,
                patients.patient_id as source_patient_id
            from exams
            {label_join} exam_labels on exams.exam_key = exam_labels.exam_key
            left join images on exams.image_file_name = images.file_name
            left join patients on exams.image_file_name = patients.file_name
            left join reports on exams.exam_key = reports.exam_key
            {prediction_join}
            where true {image_condition}
        )
        select * from joined
        order by split, exam_key
    """
    return sql, params
