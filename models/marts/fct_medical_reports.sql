{#
    One row per medical report, paired with its exam: the exam record at the SAME file name
    (`medical_report/x.json` <-> `exam/x.json`) and the SAME array position. The report's own
    `exam_id` is compared with the paired exam's id; a difference is a data-quality finding,
    not a reason to re-pair (in the real sample every report names exam id + 1).

    Incremental, per report (delete+insert on report_key). A report changes when a new version
    of it lands, when an exam record lands at its file name and position (the pairing may move),
    or when the exam it names first appears (reported_exam_key). Those reports are recomputed from
    their new versions plus the row already here, which stands for all older versions
    (`delivery_count` of them), so no older raw report is read again. `last_ingested_at` (the
    latest landing of the report or of an exam record at its slot) is the watermark, and lets
    fct_data_quality find the reports whose pairing changed without joining slots again.
#}

{{ config(
    materialized='incremental',
    incremental_strategy=unique_rows_incremental_strategy(),
    unique_key='report_key',
    on_schema_change='fail',
    meta={'watermark_column': 'last_ingested_at'},
) }}

{%- set landed_after = incremental_watermark() %}
{%- set string_type = api.Column.translate_type('string') %}
{#- one version of a report, as delivered; `versions` counts the versions a row stands for -#}
{%- set version_columns = [
    'report_key', 'reported_exam_id', 'reported_exam_id_raw', 'report_date', 'report_date_raw', 'reported_by',
    'report_text', 'extra_fields_json', 'landing_run_id', 'delivery_date', 'ingested_at', 'source_file',
    'source_file_sha256', 'record_position', 'source_file_name',
] %}

with

landed_reports as (

    select * from {{ ref('stg_neuralmed__medical_reports') }}
    where ingested_at > {{ landed_after }}

),

exam_records as (

    select
        exam_key,
        exam_id,
        source_file,
        source_file_name,
        record_position,
        landing_run_id,
        ingested_at
    from {{ ref('int_exam_records_ranked') }}

),

exams as (

    select
        exam_key,
        exam_id
    from {{ ref('int_exams_deduplicated') }}

),

{% if is_incremental() %}

    -- exam records landed since the last build: reports at their file name and position may pair anew,
    -- and reports naming their ids may now find that exam
    landed_exam_records as (

        -- its own pruned read of the records landed since (a CTE read twice would be materialised whole)
        select
            source_file_name,
            record_position,
            exam_id
        from {{ ref('int_exam_records_ranked') }}
        where ingested_at > {{ landed_after }}

    ),

{% endif %}

new_versions as (

    select
        {{ dbt.hash(dbt.concat([
            'source_file',
            "'|'",
            dbt.cast('record_position', string_type),
        ])) }} as report_key,
        {% for column in version_columns[1:] -%}
            {{ column }},
        {% endfor -%}
        1 as versions
    from landed_reports

),

{% if is_incremental() %}

    touched_reports as (

        select existing_reports.report_key
        from {{ this }} as existing_reports
        inner join landed_exam_records
            on
                existing_reports.source_file_name = landed_exam_records.source_file_name
                and existing_reports.record_position = landed_exam_records.record_position

        union distinct

        select existing_reports.report_key
        from {{ this }} as existing_reports
        inner join landed_exam_records
            on existing_reports.reported_exam_id = landed_exam_records.exam_id
        where existing_reports.reported_exam_key is null

        union distinct

        -- re-delivered report files (a narrow, exact match first: brand-new keys fetch nothing wide)
        select existing_reports.report_key
        from {{ this }} as existing_reports
        where existing_reports.report_key in (select new_versions.report_key from new_versions)

    ),

{% endif %}

report_versions as (

    select * from new_versions

    {% if is_incremental() %}

        union all

        select
            {% for column in version_columns -%}
                {{ column }},
            {% endfor -%}
            delivery_count as versions
        from {{ this }}
        where report_key in (select touched_reports.report_key from touched_reports)

    {% endif %}

),

-- A report is its file path and position; a corrected re-delivery of the same file replaces it.
latest_reports as (

    select
        *,
        row_number() over (
            partition by report_key
            order by ingested_at desc, landing_run_id desc
        ) as report_rank,
        sum(versions) over (partition by report_key) as delivery_count
    from report_versions

),

current_reports as (

    select * from latest_reports
    where report_rank = 1

),

candidate_pairs as (

    select
        current_reports.report_key,
        exam_records.exam_key,
        exam_records.exam_id,
        exam_records.source_file as exam_source_file,
        -- when the exam file was delivered more than once, prefer the copy landed with the
        -- report, then the latest one
        row_number() over (
            partition by current_reports.report_key
            order by
                case when exam_records.landing_run_id = current_reports.landing_run_id then 0 else 1 end,
                exam_records.ingested_at desc,
                exam_records.source_file desc
        ) as pair_rank,
        -- the latest landing of an exam record at the report's slot: when its pairing could last change
        max(exam_records.ingested_at) over (partition by current_reports.report_key) as slot_last_ingested_at
    from current_reports
    inner join exam_records
        on
            current_reports.source_file_name = exam_records.source_file_name
            and current_reports.record_position = exam_records.record_position

),

reported_exams as (

    select
        exam_key,
        exam_id
    from exams
    {% if is_incremental() -%}
        where exam_id in (select current_reports.reported_exam_id from current_reports)
    {%- endif %}

),

final as (

    select
        current_reports.report_key,
        candidate_pairs.exam_key,
        current_reports.reported_exam_id,
        current_reports.reported_exam_id_raw,
        reported_exams.exam_key as reported_exam_key,
        candidate_pairs.exam_id as paired_exam_id,
        candidate_pairs.exam_source_file as paired_exam_source_file,
        candidate_pairs.exam_key is not null as has_paired_exam,
        -- ids that differ, or exactly one of them missing
        candidate_pairs.exam_key is not null
        and coalesce(
            current_reports.reported_exam_id <> candidate_pairs.exam_id,
            (current_reports.reported_exam_id is null) <> (candidate_pairs.exam_id is null)
        ) as is_exam_id_mismatch,
        current_reports.report_date,
        current_reports.report_date_raw,
        current_reports.reported_by,
        current_reports.report_text,
        current_reports.extra_fields_json,
        cast(current_reports.delivery_count as integer) as delivery_count,
        current_reports.source_file,
        current_reports.source_file_name,
        current_reports.source_file_sha256,
        current_reports.record_position,
        current_reports.landing_run_id,
        current_reports.delivery_date,
        current_reports.ingested_at,
        case
            when candidate_pairs.slot_last_ingested_at > current_reports.ingested_at
                then candidate_pairs.slot_last_ingested_at
            else current_reports.ingested_at
        end as last_ingested_at
    from current_reports
    left join candidate_pairs
        on
            current_reports.report_key = candidate_pairs.report_key
            and candidate_pairs.pair_rank = 1
    left join reported_exams
        on current_reports.reported_exam_id = reported_exams.exam_id

)

select * from final
