{#
    The labels of each exam's winning delivery only: a re-delivered exam's labels REPLACE the
    older ones (they are never merged). A label belongs to the record with the same
    (landing_run_id, source_file, record_position).

    Incremental, per exam (strategy replace_partitions): the exams with a record landed after
    the watermark get all their rows replaced. Their winner is either a new record - its labels
    landed with it, so they are among the labels landed after the watermark (a pruned Parquet
    read, never all labels) - or the winner they already had, whose labels are already here.
    Every touched exam also yields one marker row without exam_label_key, so an exam whose new
    winner has no labels loses its old ones.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_partitions',
    unique_key='exam_key',
    row_key='exam_label_key',
    on_schema_change='fail',
    meta={'watermark_column': 'ingested_at'},
) }}

{%- set landed_after = incremental_watermark() %}
{#- a label assertion as this table keeps it: between exam_key and ingested_at -#}
{%- set label_columns = [
    'label', 'label_raw', 'is_label_mapped', 'is_positive', 'value_raw', 'is_invalid_value', 'labelled_on',
    'labelled_by', 'labelling_method', 'classification_type', 'label_position', 'source_file',
    'record_position', 'landing_run_id',
] %}

with

touched_winners as (

    select
        exam_key,
        landing_run_id,
        source_file,
        record_position,
        ingested_at
    from {{ ref('int_exam_records_ranked') }}
    where
        is_winning_delivery
        and exam_last_ingested_at > {{ landed_after }}

),

landed_labels as (

    select * from {{ ref('int_exam_labels_canonicalised') }}
    where ingested_at > {{ landed_after }}

),

winning_labels as (

    select
        {{ dbt.hash(dbt.concat([
            'touched_winners.exam_key',
            "'|'",
            dbt.cast('landed_labels.label_position', api.Column.translate_type('string')),
        ])) }} as exam_label_key,
        touched_winners.exam_key,
        {% for column in label_columns -%}
            landed_labels.{{ column }},
        {% endfor -%}
        landed_labels.ingested_at
    from landed_labels
    inner join touched_winners
        on
            landed_labels.landing_run_id = touched_winners.landing_run_id
            and landed_labels.source_file = touched_winners.source_file
            and landed_labels.record_position = touched_winners.record_position

),

current_labels as (

    select * from winning_labels

    {% if is_incremental() %}

        union all

        -- exams whose winner landed before the watermark still have it: keep its labels
        select
            existing_labels.exam_label_key,
            existing_labels.exam_key,
            {% for column in label_columns -%}
                existing_labels.{{ column }},
            {% endfor -%}
            existing_labels.ingested_at
        from {{ this }} as existing_labels
        inner join touched_winners
            on
                existing_labels.exam_key = touched_winners.exam_key
                and existing_labels.landing_run_id = touched_winners.landing_run_id
                and existing_labels.source_file = touched_winners.source_file
                and existing_labels.record_position = touched_winners.record_position
        where touched_winners.ingested_at <= {{ landed_after }}

    {% endif %}

),

final as (

    {% if is_incremental() %}

        -- one row per label, and one marker row (no exam_label_key) for a touched exam without labels
        select
            current_labels.exam_label_key,
            touched_winners.exam_key,
            {% for column in label_columns -%}
                current_labels.{{ column }},
            {% endfor -%}
            current_labels.ingested_at
        from touched_winners
        left join current_labels
            on touched_winners.exam_key = current_labels.exam_key

    {% else %}

        select * from current_labels

    {% endif %}

)

select * from final
-- Stored clustered by label: analysts filter on a label (`label = 'Covid' and is_positive`), and
-- DuckDB then skips the other labels' row groups from their min/max. An incremental build
-- appends its (small, sorted) batch at the end; a full refresh re-clusters everything.
order by label, exam_key
