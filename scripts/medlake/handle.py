"""``medlake.open(LAKE)``: the lake from Python, read-only, the way idc-index's ``IDCClient`` works.

    import medlake

    with medlake.open("data/demo/lake") as lake:
        lake.marts                                             # ('bridge_exam_labels', 'dim_images', ...)
        lake.sql("select body_part, count(*) as n from marts.fct_exams group by all")  # a pandas DataFrame
        lake.sql("select * from marts.fct_model_runs", output="arrow")              # a pyarrow Table
        lake.export("training_set", labels=("Covid", "Pneumonia"), body_part="Chest", require_image=True)

The handle reads the last complete build (``LAKE/medlake.duckdb``) through a read-only DuckDB
connection: a query cannot change the lake, and a build that runs meanwhile swaps in a new warehouse
without disturbing it (reopen to see the new build). The marts carry pseudonyms, not patient IDs,
unless the build opted in (``medlake build --include-patient-id``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medlake.errors import QueryError
from medlake.lake.layout import warehouse_path

if TYPE_CHECKING:
    import pandas
    import pyarrow

    from medlake.dataset.export import ExportSummary

Output = Literal["pandas", "arrow"]


class Lake:
    """A read-only handle on one lake's warehouse; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import duckdb

        self.path = Path(path)
        warehouse = warehouse_path(self.path)
        if not warehouse.is_file():
            raise QueryError(
                f"no warehouse at {warehouse}: land a delivery and build the marts first "
                f"(`medlake land --input DIR --lake {self.path}` then `medlake build --lake {self.path}`)"
            )
        try:
            self._connection = duckdb.connect(str(warehouse), read_only=True)
        except duckdb.Error as exc:
            raise QueryError(f"cannot open the warehouse {warehouse} read-only: {exc}") from exc

    @property
    def marts(self) -> tuple[str, ...]:
        """The marts analysts query (the contracted tables in schema ``marts``), sorted."""
        rows = self._connection.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by table_name"
        ).fetchall()
        return tuple(name for (name,) in rows)

    def sql(self, query: str, params: Sequence[Any] | None = None, *, output: Output = "pandas"):
        """Run one SQL query on the warehouse; a pandas DataFrame (``output="arrow"``: a pyarrow Table)."""
        import duckdb

        if output not in ("pandas", "arrow"):
            raise QueryError(f"output must be 'pandas' or 'arrow', got {output!r}")
        try:
            relation = self._connection.sql(query, params=list(params) if params else None)
            if relation is None:  # a statement with no result (a SET, say)
                raise QueryError("the statement returned no rows: Lake.sql is for queries")
            table = relation.to_arrow_table()
        except duckdb.Error as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise QueryError(f"query failed: {first_line}") from exc
        return table if output == "arrow" else _to_pandas(table)

    def table(self, mart: str, *, output: Output = "pandas") -> pandas.DataFrame | pyarrow.Table:
        """One whole mart, by name (``lake.table("fct_model_runs")``)."""
        if mart not in self.marts:
            raise QueryError(f"no mart {mart!r}; the marts are: {', '.join(self.marts)}")
        return self.sql(f'select * from marts."{mart}"', output=output)

    def export(
        self,
        out: str | os.PathLike[str],
        *,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        deidentify: bool = True,
        progress: bool = False,
        **filters: Any,
    ) -> ExportSummary:
        """A training set, as ``medlake dataset export`` writes it; ``filters`` are :class:`ExportFilters` fields."""
        from medlake.dataset import ExportFilters, SplitSpec, export_dataset

        for name in ("labels", "sources"):
            if isinstance(filters.get(name), str):
                filters[name] = ExportFilters.split_list(filters[name])
        train, val, test = split
        return export_dataset(
            self.path,
            Path(out),
            filters=ExportFilters(**filters),
            split=SplitSpec(train=train, val=val, test=test, seed=seed),
            deidentify=deidentify,
            progress=progress,
            command=f"medlake.open({str(self.path)!r}).export({str(out)!r}, ...)",
        )

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"medlake.open({str(self.path)!r})"


def _to_pandas(table: pyarrow.Table) -> pandas.DataFrame:
    try:
        return table.to_pandas()
    except ImportError:
        message = "pandas is not installed: use lake.sql(query, output='arrow'), or pip install pandas"
        raise QueryError(message) from None


def open(path: str | os.PathLike[str]) -> Lake:  # the public name, like open() for a file
    """A read-only :class:`Lake` on ``path`` (a folder ``medlake land`` and ``medlake build`` wrote)."""
    return Lake(path)
