{#
    The exams an incremental build of fct_exams recomputes: those with a record landed after
    fct_exams' watermark (a new winner, labels, delivery_count), and those whose pairing may have
    moved without a record of their own landing: an exam record or a report landed at one of their
    file slots (file name + position).

    Ephemeral, compiled into fct_exams as it builds, against that mart's own watermark
    (changes_watermark, config meta changes_of).
#}

{{ config(materialized='ephemeral', meta={'changes_of': 'fct_exams'}) }}

{%- set landed_after = changes_watermark() %}

with

exam_records as (

    select * from {{ ref('int_exam_records_ranked') }}

),

reports as (

    select * from {{ ref('fct_medical_reports') }}

),

-- int_exam_records_ranked just rewrote these exams' rows, at its end: min/max pruning reads only those
landed_exams as (

    select exam_key from {{ ref('int_exams_deduplicated') }}
    where exam_last_ingested_at > {{ landed_after }}

),

changed_slots as (

    select
        source_file_name,
        record_position
    from exam_records
    where ingested_at > {{ landed_after }}

    union distinct

    select
        source_file_name,
        record_position
    from reports
    where ingested_at > {{ landed_after }}

),

-- exams at a changed slot whose own records did not change: a report may have moved to or from them
repaired_exams as (

    select exam_records.exam_key
    from exam_records
    inner join changed_slots
        on
            exam_records.source_file_name = changed_slots.source_file_name
            and exam_records.record_position = changed_slots.record_position
    where exam_records.exam_last_ingested_at <= {{ landed_after }}

),

changed_exams as (

    select exam_key from landed_exams
    union distinct
    select exam_key from repaired_exams

)

select * from changed_exams
