"""What the dbt tests share: the marts (read from ``models/marts/``), SQL on a lake's warehouse,
mart-by-mart comparison, builds, and the records of a hand-written delivery.

A new mart is a new ``models/marts/*.sql`` file: every comparison here picks it up without a
test file naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from medlake.lake import layout as lake_layout
from medlake.warehouse import dbt_runner, sql_text

REPO_ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
# every mart the dbt project builds, in name order
MARTS = tuple(sorted(path.stem for path in (REPO_ROOT / "models" / "marts").glob("*.sql")))
# the marts built from PACS raw tables only (empty in a lake no PACS run wrote to)
PACS_MARTS = tuple(node for node in dbt_runner.PACS_NODES if node in MARTS)


def sql(lake_dir: Path, statement: str, params: list | None = None) -> list[tuple]:
    """Rows of ``statement`` on the lake's warehouse, opened read-only."""
    with duckdb.connect(str(lake_layout.warehouse_path(lake_dir)), read_only=True) as connection:
        return connection.execute(statement, params or []).fetchall()


def scalar(lake_dir: Path, statement: str, params: list | None = None):
    """The one value of a one-row, one-column query."""
    [(value,)] = sql(lake_dir, statement, params)
    return value


def mart_counts(lake_dir: Path, marts: tuple[str, ...] = MARTS) -> dict[str, int]:
    return {mart: scalar(lake_dir, f"select count(*) from marts.{mart}") for mart in marts}


def mart_differences(
    warehouse_a: Path, warehouse_b: Path, marts: tuple[str, ...] = MARTS
) -> dict[str, tuple[int, int]]:
    """Rows of each mart in a but not b, and in b but not a (duplicates counted: EXCEPT ALL).

    Both warehouses must hold the same columns in the same order.
    """
    differences = {}
    with duckdb.connect() as connection:
        connection.execute(f"attach {sql_text.string_literal(warehouse_a)} as a (read_only)")
        connection.execute(f"attach {sql_text.string_literal(warehouse_b)} as b (read_only)")
        for mart in marts:
            columns_a = connection.execute(f"select * from a.marts.{mart} limit 0").description
            columns_b = connection.execute(f"select * from b.marts.{mart} limit 0").description
            assert [c[0] for c in columns_a] == [c[0] for c in columns_b], mart
            differences[mart] = tuple(
                connection.execute(
                    f"select count(*) from (select * from {x}.marts.{mart} except all select * from {y}.marts.{mart})"
                ).fetchone()[0]
                for x, y in (("a", "b"), ("b", "a"))
            )
    return differences


def build(lake_dir: Path, *, full_refresh: bool = False, engine: str | None = None) -> dbt_runner.BuildSummary:
    """``medlake build`` on the lake, quietly, without docs."""
    extra = {} if engine is None else {"engine": engine}
    return dbt_runner.build(lake_dir, full_refresh=full_refresh, select=None, docs=False, quiet=True, **extra)


def land_and_build(delivery: Path, lake_dir: Path) -> Path:
    from medlake.lake import landing

    landing.land(delivery, lake_dir, delivery_date=None, workers=None, progress=False)
    build(lake_dir)
    return lake_dir


# --- the records of a hand-written delivery (the raw JSON shapes medlake land reads) ---------


def label_record(
    classification: str, value: object, labelled_date: str = "2021-12-05", labelled_by: str = "Test Delivery"
) -> dict:
    """One element of an exam's ``labels`` list."""
    return {
        "classification": classification,
        "labelled_by": labelled_by,
        "labelled_date": labelled_date,
        "labelling_method": "physician",
        "classification_type": "binary",
        "value": value,
    }


def exam_record(
    exam_id: int | None, published: float, labels: list[dict], image_uri: str, body_part: str | None = "CHEST"
) -> dict:
    """One exam record; ``exam_id`` or ``body_part`` None leaves the field out."""
    content: dict = {"source": ["hospital ABC"], "dataset_type": "private", "dataset": "batch"}
    if exam_id is not None:
        content["id"] = exam_id
    if body_part is not None:
        content["body_part"] = body_part
    content |= {"image_path": image_uri, "labels": labels}
    return {"content": content, "publication_timestamp": published}


def report_record(exam_id: int | None, text: str, reported_by: str = "Dr. Incremental") -> dict:
    """One medical report record; ``exam_id`` None leaves the field out."""
    content: dict = {"report_date": "2021-12-06", "reported_by": reported_by, "text": text}
    if exam_id is not None:
        content["exam_id"] = exam_id
    return {"content": content}
