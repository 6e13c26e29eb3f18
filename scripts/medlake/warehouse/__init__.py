"""The warehouse: dbt on DuckDB (or Apache Spark) over the lake's raw Parquet, and the analysts' questions.

Public face (imported on first use)::

    build(lake, *, full_refresh, select, docs, engine) -> BuildSummary   medlake build [--engine spark]
    serve_docs(lake, *, port)                                             medlake docs
    covid_without_pneumonia(lake, *, month, date_basis, engine)           medlake query ...
    chest_many_labels(lake, *, body_part, min_labels, limit, engine)
"""

from medlake._lazy import lazy_exports

__all__ = ["BuildSummary", "build", "chest_many_labels", "covid_without_pneumonia", "serve_docs"]
__getattr__ = lazy_exports(
    __name__,
    {
        "BuildSummary": "medlake.warehouse.dbt_runner",
        "build": "medlake.warehouse.dbt_runner",
        "serve_docs": "medlake.warehouse.dbt_runner",
        "covid_without_pneumonia": "medlake.warehouse.queries",
        "chest_many_labels": "medlake.warehouse.queries",
    },
)
