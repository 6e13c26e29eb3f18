{#
    Every delivered exam record with the exam it belongs to and its rank among that exam's
    deliveries. Rank 1 is the record that wins: the latest publication, ties broken by the
    latest landing, then the lexically latest file, then the later position in it.

    Incremental: an exam's ranking only changes when a new record of it lands, so a build
    re-ranks just the exams with records landed after the watermark, among their new records
    plus the ones already here (read by key, never the whole raw layer), and replaces all rows
    of those exams (delete+insert on exam_key).
#}

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='exam_key',
    on_schema_change='fail',
    meta={'watermark_column': 'exam_last_ingested_at'},
) }}

{%- set landed_after = incremental_watermark() %}
{%- set string_type = api.Column.translate_type('string') %}
{#- the delivered record, as staging has it and as this table keeps it -#}
{%- set record_columns = [
    'exam_id', 'exam_id_raw', 'source_name', 'source_raw', 'dataset_type', 'dataset', 'body_part_raw',
    'image_uri', 'image_file_name', 'labels_state', 'label_entry_count', 'published_at',
    'publication_timestamp_raw', 'extra_fields_json', 'landing_run_id', 'delivery_date', 'ingested_at',
    'source_file', 'source_file_sha256', 'record_position', 'source_file_name',
] %}

with

landed_exams as (

    select * from {{ ref('stg_neuralmed__exams') }}
    where ingested_at > {{ landed_after }}

),

new_records as (

    select
        -- an exam is its id; a record without a usable id is an exam of its own, named by its lineage
        case
            when exam_id is not null
                then {{ dbt.concat(["'exam_id|'", dbt.cast('exam_id', string_type)]) }}
            else {{ dbt.concat([
                "'lineage|'",
                'source_file',
                "'|'",
                dbt.cast('record_position', string_type),
            ]) }}
        end as exam_natural_key,
        {% for column in record_columns -%}
            {{ column }},
        {% endfor -%}
        ingested_at as latest_landing_at
    from landed_exams

),

candidate_records as (

    select * from new_records

    {% if is_incremental() %}

        union all

        -- the records already here of every exam that just got a new one
        select
            exam_natural_key,
            {% for column in record_columns -%}
                {{ column }},
            {% endfor -%}
            exam_last_ingested_at as latest_landing_at
        from {{ this }}
        -- a narrow, exact match first: a delivery of new exams fetches no wide rows at all
        where exam_key in (
            select existing_records.exam_key
            from {{ this }} as existing_records
            where existing_records.exam_natural_key in (select new_records.exam_natural_key from new_records)
        )

    {% endif %}

),

-- The same file version landed twice (a batch re-written under a new run id) is one
-- delivery, not two: keep its first landing. Copies share their exam, so this can run per exam.
distinct_deliveries as (

    select
        *,
        row_number() over (
            partition by source_file, source_file_sha256, record_position
            order by ingested_at, landing_run_id
        ) as landing_rank,
        -- the exam's watermark counts every landing of it, dropped copies included, so a copy
        -- landed later is not mistaken for unprocessed news by the next build
        max(latest_landing_at) over (partition by exam_natural_key) as exam_last_ingested_at
    from candidate_records

),

ranked as (

    select
        {{ dbt.hash('exam_natural_key') }} as exam_key,
        exam_natural_key,
        {% for column in record_columns -%}
            {{ column }},
        {% endfor -%}
        exam_last_ingested_at,
        row_number() over (
            partition by exam_natural_key
            order by
                published_at desc nulls last,
                ingested_at desc,
                source_file desc,
                record_position desc
        ) as delivery_rank,
        count(*) over (partition by exam_natural_key) as delivery_count
    from distinct_deliveries
    where landing_rank = 1

),

final as (

    select
        *,
        delivery_rank = 1 as is_winning_delivery
    from ranked

)

select * from final
