"""The one place where a path or value becomes SQL text.

Values are bound (``?`` parameters) wherever the engine allows it; where SQL must hold a literal
(DuckDB table-function arguments inside a view, dbt-duckdb's ``external_location``, ``ATTACH``),
it is made here and nowhere else:

- :func:`string_literal` quotes text for SQL (``'`` doubled; NUL refused),
- :func:`glob_escape` makes a directory match only itself in a DuckDB glob (``*``, ``?`` and ``[``
  become one-character classes), so a lake named ``*`` cannot read its neighbours' files,
- :func:`parquet_glob` / :func:`table_location` build the raw layer's Parquet globs from them.

A lake path with a quote, spaces, braces or non-ASCII letters therefore works, and no path can end
a literal early or widen a glob (tests/python/test_lake_paths.py).
"""

from __future__ import annotations

from pathlib import Path

from medlake.errors import LakeError

# DuckDB's glob syntax: `*`, `**`, `?` and `[...]` classes; a class of one character matches it literally.
GLOB_SPECIAL = frozenset("*?[")
# dbt-duckdb formats a source's external_location with str.format_map({name}, ...): braces are special.
FORMAT_BRACES = str.maketrans({"{": "{{", "}": "}}"})


def string_literal(text: str | Path) -> str:
    """``text`` as a single-quoted SQL string literal (DuckDB and Spark SQL alike)."""
    value = str(text)
    if "\x00" in value:
        raise LakeError(f"a NUL character cannot reach SQL: {value!r}")
    return "'" + value.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    if "\x00" in name:
        raise LakeError(f"a NUL character cannot reach SQL: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def glob_escape(path: str | Path) -> str:
    """``path`` with every DuckDB glob character matched literally."""
    return "".join(f"[{char}]" if char in GLOB_SPECIAL else char for char in str(path))


def parquet_glob(directory: str | Path) -> str:
    """Every ``*.parquet`` file at any depth under ``directory`` (a glob to bind or quote)."""
    return glob_escape(Path(directory)) + "/**/*.parquet"


def read_parquet_call(directory: str | Path) -> str:
    """``read_parquet(...)`` of a raw table directory, as the staging layer reads it."""
    return f"read_parquet({string_literal(parquet_glob(directory))}, hive_partitioning = false, union_by_name = true)"


def table_location(tables_dir: Path) -> str:
    """The dbt-duckdb ``external_location`` template of the tables under ``tables_dir`` (``{name}`` = table).

    medlake passes it to dbt in an environment variable that the sources' YAML reads
    (``MEDLAKE_RAW_LOCATION``, ``MEDLAKE_DERIVED_LOCATION``), so the lake path is quoted here, by
    Python, rather than pasted into SQL by a template.
    """
    placeholder = "\x01name\x01"  # survives quoting untouched, then becomes the {name} slot
    location = read_parquet_call(Path(tables_dir) / placeholder)
    return location.translate(FORMAT_BRACES).replace(placeholder, "{name}")
