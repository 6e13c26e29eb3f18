"""The analysts' standard questions, answered from the marts in the lake's DuckDB warehouse.

The same logic lives as dbt analyses (``analyses/covid_without_pneumonia.sql``,
``analyses/chest_many_labels.sql``) for analysts who work in SQL; here it is parameterised
with ``?`` placeholders and run against the warehouse opened read-only, so a query never
needs dbt and never blocks another reader. ``tests/python/test_queries.py`` checks that both
give the same answers.

``engine='spark'`` answers from the marts a Spark build wrote (``medlake build --engine spark``):
plain Parquet tables under ``LAKE/spark/warehouse``, read by DuckDB (:func:`medlake.warehouse.spark.open_marts`).
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlake.errors import LakeError, QueryError
from medlake.lake.layout import warehouse_path

DATE_BASES = ("exam", "label")

COVID_WITHOUT_PNEUMONIA_SQL = {
    # The exam's own month: when the (winning delivery of the) exam was published.
    "exam": """
        with
        covid_positive as (
            select distinct exam_key
            from marts.bridge_exam_labels
            where label = 'Covid' and is_positive
        ),
        pneumonia_positive as (
            select distinct exam_key
            from marts.bridge_exam_labels
            where label = 'Pneumonia' and is_positive
        )
        select exams.exam_id, exams.exam_key
        from marts.fct_exams as exams
        inner join covid_positive on exams.exam_key = covid_positive.exam_key
        left join pneumonia_positive on exams.exam_key = pneumonia_positive.exam_key
        where pneumonia_positive.exam_key is null
            and exams.published_at >= ? and exams.published_at < ?
        order by exams.exam_id nulls last, exams.exam_key
    """,
    # The month a positive Covid label was given on the exam.
    "label": """
        with
        covid_positive_in_month as (
            select distinct exam_key
            from marts.bridge_exam_labels
            where label = 'Covid' and is_positive
                and labelled_on >= ? and labelled_on < ?
        ),
        pneumonia_positive as (
            select distinct exam_key
            from marts.bridge_exam_labels
            where label = 'Pneumonia' and is_positive
        )
        select exams.exam_id, exams.exam_key
        from marts.fct_exams as exams
        inner join covid_positive_in_month on exams.exam_key = covid_positive_in_month.exam_key
        left join pneumonia_positive on exams.exam_key = pneumonia_positive.exam_key
        where pneumonia_positive.exam_key is null
        order by exams.exam_id nulls last, exams.exam_key
    """,
}

MANY_LABELS_COUNT_SQL = """
    select count(*)
    from marts.fct_exams
    where lower(body_part) = lower(?) and label_count >= ?
"""

# The sample is the first exams by exam_key (an md5 hash): deterministic, and spread over the
# deliveries instead of the lowest ids.
MANY_LABELS_SAMPLE_SQL = """
    with
    matching_exams as (
        select *
        from marts.fct_exams
        where lower(body_part) = lower(?) and label_count >= ?
        order by exam_key
        limit ?
    ),
    exam_labels as (
        select
            exam_key,
            list(label order by label_position) as labels,
            list(distinct label order by label) filter (where is_positive) as positive_labels
        from marts.bridge_exam_labels
        where exam_key in (select exam_key from matching_exams)
        group by exam_key
    )
    select
        matching_exams.exam_id,
        matching_exams.exam_key,
        matching_exams.body_part,
        matching_exams.label_count,
        coalesce(exam_labels.labels, []) as labels,
        coalesce(exam_labels.positive_labels, []) as positive_labels,
        matching_exams.published_at,
        matching_exams.image_uri,
        images.file_name,
        coalesce(images.is_file_available, false) as is_file_available,
        images.modality,
        images.pixel_rows,
        images.pixel_columns,
        images.view_position,
        images.photometric_interpretation,
        images.patient_pseudonym,
        images.study_instance_uid,
        images.sop_instance_uid,
        images.orthanc_instance_id,
        coalesce(images.has_sr, false) as has_sr
    from matching_exams
    left join exam_labels on matching_exams.exam_key = exam_labels.exam_key
    left join marts.dim_images as images on matching_exams.image_key = images.image_key
    order by matching_exams.exam_key
"""

WITH_PREDICTIONS_COUNT_SQL = """
    select count(*)
    from marts.fct_exams as exams
    where exists (select 1 from marts.fct_predictions as p where p.image_key = exams.image_key)
"""

# Each exam whose image was classified: its delivered labels next to the latest run's positive
# calls and top scores, so a data scientist can compare labels with the model at a glance.
WITH_PREDICTIONS_SAMPLE_SQL = """
    with
    latest_run_per_image as (
        select image_key, arg_max(run_id, predicted_at) as run_id
        from marts.fct_predictions
        group by image_key
    ),
    latest_predictions as (
        select predictions.*
        from marts.fct_predictions as predictions
        inner join latest_run_per_image
            on predictions.image_key = latest_run_per_image.image_key
            and predictions.run_id = latest_run_per_image.run_id
    ),
    prediction_summary as (
        select
            image_key,
            any_value(run_id) as run_id,
            any_value(model_name) as model_name,
            bool_and(weights_trained) as weights_trained,
            any_value(sr_sop_instance_uid) as sr_sop_instance_uid,
            list(label order by label) filter (where is_positive) as predicted_positive_labels,
            list({'label': label, 'score': round(score, 4)} order by score desc)[1:3] as top_scores
        from latest_predictions
        group by image_key
    ),
    matching_exams as (
        select exams.*
        from marts.fct_exams as exams
        inner join prediction_summary on exams.image_key = prediction_summary.image_key
        order by exams.exam_key
        limit ?
    ),
    exam_labels as (
        select
            exam_key,
            list(distinct label order by label) filter (where is_positive) as labelled_positive_labels
        from marts.bridge_exam_labels
        where exam_key in (select exam_key from matching_exams)
        group by exam_key
    )
    select
        matching_exams.exam_id,
        matching_exams.exam_key,
        matching_exams.body_part,
        images.file_name,
        images.sop_instance_uid,
        images.orthanc_instance_id,
        coalesce(exam_labels.labelled_positive_labels, []) as labelled_positive_labels,
        coalesce(prediction_summary.predicted_positive_labels, []) as predicted_positive_labels,
        prediction_summary.top_scores,
        prediction_summary.run_id,
        prediction_summary.model_name,
        prediction_summary.weights_trained,
        prediction_summary.sr_sop_instance_uid
    from matching_exams
    inner join prediction_summary on matching_exams.image_key = prediction_summary.image_key
    left join exam_labels on matching_exams.exam_key = exam_labels.exam_key
    left join marts.dim_images as images on matching_exams.image_key = images.image_key
    order by matching_exams.exam_key
"""


@dataclass(frozen=True)
class CovidWithoutPneumonia:
    """Exams with a positive Covid label and no positive Pneumonia label in one month."""

    count: int
    exam_ids: tuple[int | None, ...]
    month: str
    date_basis: str
    exam_keys: tuple[str, ...] = ()

    def render(self) -> str:
        basis = (
            "the exam's publication month (published_at, UTC)"
            if self.date_basis == "exam"
            else "the month the positive Covid label was given (labelled_on)"
        )
        lines = [
            "Exams with a positive Covid label and no positive Pneumonia label",
            f"  month       {self.month}, by {basis}",
            f"  count       {self.count}",
        ]
        if self.exam_ids:
            shown = ", ".join("(no id)" if exam_id is None else str(exam_id) for exam_id in self.exam_ids)
            lines.append(textwrap.fill(shown, width=100, initial_indent="  exam ids    ", subsequent_indent=" " * 14))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "count": self.count,
            "exam_ids": list(self.exam_ids),
            "month": self.month,
            "date_basis": self.date_basis,
        }


@dataclass(frozen=True)
class ChestManyLabels:
    """How many exams of one body part have many labels, and a deterministic sample with their images."""

    count: int
    sample: tuple[dict, ...]
    body_part: str
    min_labels: int
    limit: int

    def render(self) -> str:
        lines = [
            f"Exams of body part {self.body_part!r} with at least {self.min_labels} labels: {self.count}",
            f"sample of {len(self.sample)} (first by exam_key):",
        ]
        if not self.sample:
            return "\n".join(lines)
        header = f"  {'exam_id':>8}  {'labels':>6}  {'file':<5} {'modality':<8} {'size':<11} positive labels / image"
        lines.append(header)
        for exam in self.sample:
            size = f"{exam['rows']}x{exam['columns']}" if exam["rows"] else "-"
            positives = ", ".join(exam["positive_labels"]) or "-"
            exam_id = "(none)" if exam["exam_id"] is None else exam["exam_id"]
            lines.append(
                f"  {exam_id!s:>8}  {exam['label_count']:>6}  {'yes' if exam['is_file_available'] else 'no':<5} "
                f"{exam['modality'] or '-':<8} {size:<11} {positives}"
            )
            lines.append(f"  {'':>8}  {'':>6}  {exam['image_uri'] or '(no image uri)'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "count": self.count,
            "sample": [dict(exam) for exam in self.sample],
            "body_part": self.body_part,
            "min_labels": self.min_labels,
            "limit": self.limit,
        }


@dataclass(frozen=True)
class ExamsWithPredictions:
    """Exams whose image was classified by a PACS run: delivered labels next to the model's calls."""

    count: int
    sample: tuple[dict, ...]
    limit: int

    def render(self) -> str:
        lines = [f"Exams whose image has predictions: {self.count}; sample of {len(self.sample)} (first by exam_key):"]
        for exam in self.sample:
            untrained = "" if exam["weights_trained"] else "  [UNTRAINED weights: scores are meaningless]"
            scores = ", ".join(f"{s['label']} {s['score']:.3f}" for s in exam["top_scores"] or [])
            lines += [
                f"  exam {exam['exam_id']} ({exam['body_part'] or '-'}) image {exam['file_name']}{untrained}",
                f"    labelled positive  {', '.join(exam['labelled_positive_labels']) or '-'}",
                f"    predicted positive {', '.join(exam['predicted_positive_labels']) or '-'}",
                f"    top scores         {scores or '-'}",
            ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"count": self.count, "sample": [dict(exam) for exam in self.sample], "limit": self.limit}


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """'2021-12' -> (2021-12-01, 2022-01-01): the half-open range of the month."""
    try:
        start = dt.datetime.strptime(month, "%Y-%m").date()
    except (TypeError, ValueError):
        raise QueryError(f"month must be YYYY-MM, got {month!r}") from None
    if (start.year, start.month) == (dt.MAXYEAR, 12):
        # its end (year 10000) is past what a date can hold
        raise QueryError(f"month must be between 0001-01 and {dt.MAXYEAR}-11, got {month!r}")
    end = dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start, end


def _fetch(
    lake: Path, statements: Sequence[tuple[str, Sequence[Any]]], engine: str = "duckdb"
) -> list[tuple[list[str], list[tuple]]]:
    """Run each (sql, params) on the lake's warehouse, read-only; returns (column names, rows) per statement."""
    import duckdb

    warehouse = warehouse_path(Path(lake))
    if engine == "spark":
        from medlake.warehouse import spark

        try:
            connection = spark.open_marts(Path(lake))
        except LakeError as exc:
            raise QueryError(str(exc)) from exc
        warehouse = spark.warehouse_dir(Path(lake))
    elif not warehouse.is_file():
        raise QueryError(
            f"no warehouse at {warehouse}: land a delivery and build the marts first "
            f"(`medlake land --input DIR --lake {lake}` then `medlake build --lake {lake}`)"
        )
    else:
        try:
            connection = duckdb.connect(str(warehouse), read_only=True)
        except duckdb.Error as exc:
            raise QueryError(f"cannot open the warehouse {warehouse} read-only: {_first_line(exc)}") from exc
    answers = []
    try:
        for sql, params in statements:
            cursor = connection.execute(sql, list(params))
            columns = [description[0] for description in cursor.description]
            answers.append((columns, cursor.fetchall()))
    except duckdb.CatalogException as exc:
        raise QueryError(
            f"the marts are not built in {warehouse}: run `medlake build --lake {lake}` first ({_first_line(exc)})"
        ) from exc
    except duckdb.Error as exc:
        raise QueryError(f"query failed on {warehouse}: {_first_line(exc)}") from exc
    finally:
        connection.close()
    return answers


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def covid_without_pneumonia(
    lake: Path, *, month: str, date_basis: str = "exam", engine: str = "duckdb"
) -> CovidWithoutPneumonia:
    """Exams with a positive Covid label and no positive Pneumonia label in ``month`` (YYYY-MM).

    ``date_basis='exam'`` filters on the exam's ``published_at`` month; ``'label'`` on the month a
    positive Covid label was given (``labelled_on``). Pneumonia is excluded whatever its date.
    """
    if date_basis not in DATE_BASES:
        raise QueryError(f"date_basis must be one of {', '.join(DATE_BASES)}, got {date_basis!r}")
    start, end = month_bounds(month)
    if date_basis == "exam":
        bounds: tuple[Any, Any] = (
            dt.datetime.combine(start, dt.time()),
            dt.datetime.combine(end, dt.time()),
        )
    else:
        bounds = (start, end)
    [(_, rows)] = _fetch(lake, [(COVID_WITHOUT_PNEUMONIA_SQL[date_basis], bounds)], engine)
    return CovidWithoutPneumonia(
        count=len(rows),
        exam_ids=tuple(row[0] for row in rows),
        month=month,
        date_basis=date_basis,
        exam_keys=tuple(row[1] for row in rows),
    )


MAX_WHOLE_NUMBER = 2**63 - 1  # BIGINT


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or not 1 <= value <= MAX_WHOLE_NUMBER:
        raise QueryError(f"{name} must be a whole number between 1 and {MAX_WHOLE_NUMBER}, got {value!r}")


def _sample_rows(columns: list[str], rows: list[tuple], renamed: dict[str, str]) -> tuple[dict, ...]:
    return tuple(
        {renamed.get(name, name): _json_ready(value) for name, value in zip(columns, row, strict=True)} for row in rows
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    return value


def chest_many_labels(
    lake: Path, *, body_part: str = "Chest", min_labels: int = 6, limit: int = 20, engine: str = "duckdb"
) -> ChestManyLabels:
    """Exams of canonical ``body_part`` (case-insensitive) with at least ``min_labels`` label assertions.

    Returns how many match and the first ``limit`` by exam_key with their labels and image
    (URI, file availability, DICOM modality and size when the file was scanned).
    """
    _check_positive("min_labels", min_labels)
    _check_positive("limit", limit)
    if not body_part or not body_part.strip():
        raise QueryError("body_part must not be empty")
    body_part = body_part.strip()
    try:
        body_part.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError(f"body_part must be text (UTF-8), got {body_part!r}") from None
    [(_, count_rows), (columns, rows)] = _fetch(
        lake,
        [
            (MANY_LABELS_COUNT_SQL, (body_part, min_labels)),
            (MANY_LABELS_SAMPLE_SQL, (body_part, min_labels, limit)),
        ],
        engine,
    )
    sample = _sample_rows(columns, rows, {"pixel_rows": "rows", "pixel_columns": "columns"})
    return ChestManyLabels(
        count=count_rows[0][0], sample=sample, body_part=body_part, min_labels=min_labels, limit=limit
    )


def exams_with_predictions(lake: Path, *, limit: int = 10, engine: str = "duckdb") -> ExamsWithPredictions:
    """Exams whose image was classified: delivered positive labels next to the latest run's calls."""
    _check_positive("limit", limit)
    [(_, count_rows), (columns, rows)] = _fetch(
        lake, [(WITH_PREDICTIONS_COUNT_SQL, ()), (WITH_PREDICTIONS_SAMPLE_SQL, (limit,))], engine
    )
    return ExamsWithPredictions(count=count_rows[0][0], sample=_sample_rows(columns, rows, {}), limit=limit)
