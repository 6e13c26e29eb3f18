{#
    Building blocks of the incremental models (int_exam_records_ranked, bridge_exam_labels,
    fct_exams, fct_medical_reports, dim_images, fct_data_quality).

    Each of them recomputes whole *partitions* (all rows of one exam, image, report...) that
    rows landed after its watermark touch, and replaces them; `medlake build --full-refresh`
    (dbt's --full-refresh) rebuilds everything from the raw layer. The watermark is the latest
    landing time (`ingested_at`, one value per `medlake land` run) the model has already folded in.
#}

{#
    The latest value of the model's watermark column (config meta `watermark_column`, the
    time the newest landing the model has folded in) already in its table, as a timestamp
    literal. A literal, not a subquery: DuckDB prunes Parquet row groups on
    `ingested_at > <literal>` from their min/max statistics, so an incremental build reads only
    the new parts' rows. Outside an incremental run (first or full build, unit tests, parsing)
    it is a timestamp older than any data, so "newer than the watermark" means everything.
    Tests on the model use the same column to check only changed rows (changed_rows.sql).
#}
{% macro incremental_watermark() -%}
    {%- if not execute or not is_incremental() -%}
        {{ return(watermark_floor()) }}
    {%- endif -%}
    {%- set column = config.get('meta', {}).get('watermark_column') -%}
    {%- if not column -%}
        {{ exceptions.raise_compiler_error("incremental model " ~ this ~ " needs config meta.watermark_column") }}
    {%- endif -%}
    {{ return(watermark_in(this, column)) }}
{%- endmacro %}

{# A timestamp older than any data: "landed after it" means everything. #}
{% macro watermark_floor() -%}
    {{ return("cast('1900-01-01 00:00:00' as " ~ dbt.type_timestamp() ~ ")") }}
{%- endmacro %}

{#
    The watermark of the incremental model a change-set model (int_*_changes, ephemeral) is for:
    config meta `changes_of` names it. The change set is compiled into that model as it builds,
    so this reads the same table, at the same moment, as the model's own incremental_watermark().
    Floor when the model is not built yet or on --full-refresh (it then reads no change set).
#}
{% macro changes_watermark() -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{ return(watermark_floor()) }}
    {%- endif -%}
    {%- set consumer_name = config.get('meta', {}).get('changes_of') -%}
    {%- set consumer = graph.nodes.get('model.' ~ project_name ~ '.' ~ consumer_name) -%}
    {%- if consumer is none -%}
        {{ exceptions.raise_compiler_error("change set " ~ model.name ~ " needs config meta.changes_of naming a model") }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(
        database=consumer.database, schema=consumer.schema, identifier=consumer.alias
    ) -%}
    {%- if relation is none -%}
        {{ return(watermark_floor()) }}
    {%- endif -%}
    {{ return(watermark_in(relation, consumer.config.meta.watermark_column)) }}
{%- endmacro %}

{#
    The latest value of `column` in `relation`, as a timestamp literal (floor when it is empty).
    As text, formatted by the engine in its session zone (UTC): a timestamp value fetched into
    Python may come back in the process's local zone (pyspark does that), and a watermark an
    hour late silently skips a delivery.
#}
{% macro watermark_in(relation, column) -%}
    {%- set latest = run_query(
        "select " ~ dbt.cast("max(" ~ column ~ ")", api.Column.translate_type('string')) ~ " from " ~ relation
    ).columns[0].values()[0] -%}
    {%- if latest is none -%}
        {{ return(watermark_floor()) }}
    {%- endif -%}
    {#- the result table may have parsed the text back into a (naive, unshifted) datetime -#}
    {%- set latest_text = latest if latest is string else latest.isoformat(sep=' ') -%}
    {{ return("cast('" ~ latest_text ~ "' as " ~ dbt.type_timestamp() ~ ")") }}
{%- endmacro %}

{#
    Custom incremental strategy `replace_partitions`: delete every row whose `unique_key` (the
    partition: exam_key, image_key...) appears in the new batch, then insert the batch's rows.
    Unlike plain delete+insert, a partition can become EMPTY: the batch carries one marker row
    per touched partition with `row_key` NULL (e.g. an exam re-delivered with zero labels), which
    deletes the old rows and is not inserted itself. Plain, portable SQL (DELETE ... IN (subquery)
    and INSERT ... SELECT), so it runs unchanged on other dbt adapters.
#}
{% macro get_incremental_replace_partitions_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set batch = arg_dict['temp_relation'] -%}
    {%- set partition_key = arg_dict['unique_key'] -%}
    {%- set row_key = config.get('row_key') -%}
    {%- if not partition_key or not row_key -%}
        {{ exceptions.raise_compiler_error(
            "incremental_strategy 'replace_partitions' needs unique_key (the partition) and row_key configs"
        ) }}
    {%- endif -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {#- its own statement (same transaction): adapters that run one statement per call need that -#}
    {%- call statement('replace_partitions_delete') -%}
        delete from {{ target }}
        where {{ partition_key }} in (select {{ partition_key }} from {{ batch }})
    {%- endcall -%}
    insert into {{ target }} ({{ columns }})
    select {{ columns }}
    from {{ batch }}
    where {{ row_key }} is not null
{%- endmacro %}

{#
    The incremental strategy of a model with ONE row per `unique_key` (fct_exams,
    fct_medical_reports), chosen per target: `merge` where the tables take it (Databricks, or a
    Spark target with spark_file_format delta/iceberg/hudi: MERGE INTO updates the matched rows
    in place), `delete+insert` elsewhere (DuckDB; plain Parquet on Spark, where
    macros/spark/incremental.sql rewrites through a side table). Models with several rows per
    key keep delete+insert / replace_partitions: a MERGE on their key would match many rows.
#}
{% macro unique_rows_incremental_strategy() -%}
    {%- set dml_formats = ['delta', 'iceberg', 'hudi'] -%}
    {%- if target.type == 'databricks'
        or (target.type == 'spark' and var('spark_file_format', 'parquet') in dml_formats) -%}
        {{ return('merge') }}
    {%- endif -%}
    {{ return('delete+insert') }}
{%- endmacro %}
