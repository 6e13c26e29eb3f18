{#
    One row per exam: its winning delivery, label counts from int_exam_label_summary, whether a
    report pairs with it, data-quality flags.

    Incremental, per exam (delete+insert on exam_key): the exams int_exam_changes lists (a record
    of theirs landed, or a report or another exam record landed at one of their file slots) are
    recomputed. `last_ingested_at` (latest landing of the exam or of a report paired with it) is
    the watermark.
#}

{{ config(
    materialized='incremental',
    incremental_strategy=unique_rows_incremental_strategy(),
    unique_key='exam_key',
    on_schema_change='fail',
    meta={'watermark_column': 'last_ingested_at'},
) }}

-- depends_on: {{ ref('int_exam_changes') }} (read only by incremental builds)

with

reports as (

    select * from {{ ref('fct_medical_reports') }}

),

label_summaries as (

    select * from {{ ref('int_exam_label_summary') }}

),

{% if is_incremental() %}

    exam_changes as (

        select * from {{ ref('int_exam_changes') }}

    ),

{% endif %}

-- the exams int_exam_changes lists (every exam in a first or full build)
exams as (

    select * from {{ ref('int_exams_deduplicated') }}
    {% if is_incremental() -%}
        where exam_key in (select exam_changes.exam_key from exam_changes)
    {%- endif %}

),

label_summary as (

    select * from label_summaries
    {% if is_incremental() -%}
        where exam_key in (select exam_changes.exam_key from exam_changes)
    {%- endif %}

),

report_summary as (

    select
        exam_key,
        max(ingested_at) as last_report_ingested_at
    from reports
    where
        exam_key is not null
    {% if is_incremental() %}
        and exam_key in (select exam_changes.exam_key from exam_changes)
    {% endif %}
    group by exam_key

),

final as (

    select
        exams.exam_key,
        exams.exam_id,
        exams.exam_id_raw,
        exams.source_name as source,
        exams.dataset,
        exams.dataset_type,
        exams.body_part,
        exams.body_part_raw,
        exams.published_at,
        case
            when exams.image_file_name is not null then {{ dbt.hash('exams.image_file_name') }}
        end as image_key,
        exams.image_uri,
        exams.image_file_name,
        exams.labels_state,
        exams.label_entry_count,
        cast(coalesce(label_summary.label_count, 0) as integer) as label_count,
        cast(coalesce(label_summary.positive_label_count, 0) as integer) as positive_label_count,
        report_summary.exam_key is not null as has_medical_report,
        cast(exams.delivery_count as integer) as delivery_count,
        exams.is_missing_exam_id,
        exams.is_invalid_exam_id,
        exams.is_missing_body_part,
        exams.is_unmapped_body_part,
        exams.is_missing_published_at,
        coalesce(label_summary.unmapped_label_count, 0) > 0 as has_unmapped_labels,
        coalesce(label_summary.invalid_label_value_count, 0) > 0 as has_invalid_label_values,
        coalesce(label_summary.contradictory_label_count, 0) > 0 as has_contradictory_labels,
        -- labels that were in the delivery but are not objects went to quarantine
        exams.label_entry_count > coalesce(label_summary.label_count, 0) as has_quarantined_labels,
        exams.extra_fields_json,
        exams.source_file,
        exams.source_file_sha256,
        exams.record_position,
        exams.landing_run_id,
        exams.delivery_date,
        exams.ingested_at,
        -- the latest landing of anything about the exam: a delivery of it or its report
        case
            when report_summary.last_report_ingested_at > exams.exam_last_ingested_at
                then report_summary.last_report_ingested_at
            else exams.exam_last_ingested_at
        end as last_ingested_at
    from exams
    left join label_summary
        on exams.exam_key = label_summary.exam_key
    left join report_summary
        on exams.exam_key = report_summary.exam_key

)

select * from final
