{#
    medlake's incremental strategies on Spark.

    The models use `delete+insert` (one partition key, e.g. exam_key, replaced whole) and the
    project's `replace_partitions` (the same, where a partition may become empty:
    macros/incremental.sql). dbt-spark knows neither: it validates strategies against
    append / merge / insert_overwrite / microbatch. These overrides of dbt-spark's two
    strategy macros add both, and keep everything else as dbt-spark does it.

    * Delta / Iceberg / Hudi tables (a cluster, `file_format` other than parquet) take DML:
      DELETE ... WHERE key IN (SELECT ...) then INSERT, as on DuckDB. One-row-per-key models
      can use dbt-spark's own `merge` there instead (incremental_strategy_for_unique_rows).
    * Plain Parquet tables (the local `spark` target: Delta and Iceberg jars cannot be fetched
      here) take no DELETE, UPDATE, MERGE or CREATE OR REPLACE, and Spark refuses an INSERT
      OVERWRITE of a table the same query reads. So the batch is first materialised as a table
      (dbt's temporary view reads the target itself, lazily), then:
        - no batch key is in the target (a delivery of new exams): INSERT INTO the target;
        - otherwise the target is rewritten through a side table - its rows outside the
          batch's partitions plus the batch's rows - which then replaces it (drop + rename).
      The rewrite reads and writes the whole table: its cost grows with the table, not with
      the delivery (docs/scaling.md has the measured figures). Between the drop and the rename
      the table is absent; a crash there leaves the side table, and the next build of that
      model is a full build of it (dbt finds no table).
#}

{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {%- if raw_strategy in ['delete+insert', 'replace_partitions'] -%}
        {% do return(raw_strategy) %}
    {%- endif -%}
    {%- set dml_formats = ['delta', 'iceberg', 'hudi'] -%}
    {%- if raw_strategy not in ['append', 'merge', 'insert_overwrite', 'microbatch'] -%}
        {% do exceptions.raise_compiler_error(
            "Invalid incremental strategy provided: " ~ raw_strategy
            ~ ". Expected one of: 'append', 'merge', 'insert_overwrite', 'microbatch', 'delete+insert', 'replace_partitions'"
        ) %}
    {%- endif -%}
    {%- if raw_strategy == 'merge' and file_format not in dml_formats -%}
        {% do exceptions.raise_compiler_error(
            "Invalid incremental strategy provided: merge. You can only choose this strategy when file_format is set to "
            ~ "'delta' or 'iceberg' or 'hudi'"
        ) %}
    {%- endif -%}
    {%- if raw_strategy in ['insert_overwrite', 'microbatch'] and target.endpoint -%}
        {% do exceptions.raise_compiler_error(
            "Invalid incremental strategy provided: " ~ raw_strategy ~ ". You cannot use this strategy when connecting "
            ~ "via endpoint. Use the 'append' or 'merge' strategy instead"
        ) %}
    {%- endif -%}
    {% do return(raw_strategy) %}
{% endmacro %}


{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy in ['delete+insert', 'replace_partitions'] -%}
        {{ spark_replace_partitions_sql(strategy, source, target, unique_key) }}
    {%- elif strategy == 'append' -%}
        {{ get_insert_into_sql(source, target) }}
    {%- elif strategy == 'insert_overwrite' -%}
        {{ get_insert_overwrite_sql(source, target, existing) }}
    {%- elif strategy == 'microbatch' -%}
        {%- if not config.get('partition_by') -%}
            {{ exceptions.raise_compiler_error(
                "dbt-spark 'microbatch' incremental strategy requires a `partition_by` config."
            ) }}
        {%- endif -%}
        {{ get_insert_overwrite_sql(source, target, existing) }}
    {%- elif strategy == 'merge' -%}
        {{ get_merge_sql(target, source, unique_key, dest_columns=none, incremental_predicates=incremental_predicates) }}
    {%- else -%}
        {%- do exceptions.raise_compiler_error("No known SQL for the incremental strategy provided: " ~ strategy) -%}
    {%- endif -%}
{% endmacro %}


{#
    Replace every partition (rows sharing `unique_key`) the batch touches. `replace_partitions`
    inserts only batch rows with a `row_key` (the others mark emptied partitions); `delete+insert`
    inserts them all. Returns the last statement, which dbt runs as the model's `main`.
#}
{% macro spark_replace_partitions_sql(strategy, source, target, unique_key) %}
    {%- if unique_key is not string or not unique_key -%}
        {{ exceptions.raise_compiler_error(strategy ~ " on Spark needs unique_key: one column, the partition") }}
    {%- endif -%}
    {%- set row_key = config.get('row_key') if strategy == 'replace_partitions' else none -%}
    {%- if strategy == 'replace_partitions' and not row_key -%}
        {{ exceptions.raise_compiler_error("incremental_strategy 'replace_partitions' needs unique_key and row_key configs") }}
    {%- endif -%}
    {%- set inserted = ('where ' ~ row_key ~ ' is not null') if row_key else '' -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- set file_format = config.get('file_format', 'parquet') -%}

    {%- if file_format in ['delta', 'iceberg', 'hudi'] -%}
        {%- call statement('replace_partitions_delete') -%}
            delete from {{ target }} where {{ unique_key }} in (select {{ unique_key }} from {{ source }})
        {%- endcall -%}
        insert into {{ target }} ({{ columns }}) select {{ columns }} from {{ source }} {{ inserted }}
    {%- else -%}
        {%- set batch = target.incorporate(path={'identifier': target.identifier ~ '__medlake_batch'}, type='table') -%}
        {%- set rewrite = target.incorporate(path={'identifier': target.identifier ~ '__medlake_rewrite'}, type='table') -%}
        {%- do run_query('drop table if exists ' ~ batch) -%}
        {%- do run_query('drop table if exists ' ~ rewrite) -%}
        {%- do run_query('create table ' ~ batch ~ ' using parquet as select * from ' ~ source) -%}
        {%- set overlap = run_query(
            'select 1 from ' ~ target ~ ' where ' ~ unique_key ~ ' in (select ' ~ unique_key ~ ' from ' ~ batch ~ ') limit 1'
        ) -%}
        {%- if overlap.rows | length == 0 -%}
            {%- call statement('replace_partitions_append') -%}
                insert into {{ target }} ({{ columns }}) select {{ columns }} from {{ batch }} {{ inserted }}
            {%- endcall -%}
        {%- else -%}
            {%- call statement('replace_partitions_rewrite') -%}
                create table {{ rewrite }} using parquet as
                select {{ columns }}
                from {{ target }} as kept
                where not exists (
                    select 1 from {{ batch }} as batch_rows where batch_rows.{{ unique_key }} = kept.{{ unique_key }}
                )
                union all
                select {{ columns }} from {{ batch }} {{ inserted }}
            {%- endcall -%}
            {%- do adapter.drop_relation(target.incorporate(type='table')) -%}
            {%- do adapter.rename_relation(rewrite, target.incorporate(type='table')) -%}
        {%- endif -%}
        drop table if exists {{ batch }}
    {%- endif -%}
{% endmacro %}
