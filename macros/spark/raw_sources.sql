{#
    The raw layer as tables an engine can name. dbt-duckdb reads each source's Parquet in place
    (the sources' `external_location`); dbt-spark ignores that setting, so on Spark this
    on-run-start hook (re)creates every source `<schema>.<table>` as an EXTERNAL Parquet table
    over LAKE/<schema>/<table> (LAKE/raw/exams...) in the lake's own metastore. Dropping an external table never deletes its
    files. `recursiveFileLookup` reads every part under the `delivery_date=` folders and the
    zero-row `schema.parquet` beside them as one table; `delivery_date` is a column of the
    files, as on DuckDB (hive_partitioning = false). Each run (a new Spark session) lists the
    files landed since. The tables are re-created when MEDLAKE_SPARK_RECREATE_RAW is set, which
    `medlake build` does for a first build and a full refresh (a changed raw schema changes the
    Spark fingerprint, so it forces one); otherwise they are created only if missing, which
    saves two metastore round trips per table on every incremental build. A moved or copied
    lake never reuses its metastore (medlake.warehouse.spark.reset_if_foreign).
#}
{% macro create_raw_source_tables() -%}
    {{ return(adapter.dispatch('create_raw_source_tables', 'medlake')()) }}
{%- endmacro %}

{% macro default__create_raw_source_tables() -%}
    {{ return('') }}
{%- endmacro %}

{% macro spark__create_raw_source_tables() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set lake = env_var('MEDLAKE_LAKE_DIR', 'data/lake') -%}
    {%- set recreate = env_var('MEDLAKE_SPARK_RECREATE_RAW', '') | trim | length > 0 -%}
    {%- set schemas = [] -%}
    {%- for source_node in graph.sources.values() | sort(attribute='unique_id') -%}
        {%- if source_node.schema not in schemas -%}
            {%- do run_query('create database if not exists ' ~ source_node.schema) -%}
            {%- do schemas.append(source_node.schema) -%}
        {%- endif -%}
        {%- set table = source_node.schema ~ '.' ~ source_node.identifier -%}
        {%- if recreate -%}
            {%- do run_query('drop table if exists ' ~ table) -%}
        {%- endif -%}
        {%- do run_query(
            'create table if not exists ' ~ table ~ ' using parquet'
            ~ " options (recursiveFileLookup 'true')"
            ~ ' location ' ~ spark_string_literal(lake ~ '/' ~ source_node.schema ~ '/' ~ source_node.identifier)
        ) -%}
    {%- endfor -%}
    {{ return('') }}
{%- endmacro %}
