{#
    Every data-quality finding in one place, one row per finding, so analysts see what the
    deliveries got wrong: quarantined files/records/labels, report/exam id mismatches,
    unpaired reports, missing or invalid exam ids, unmapped spellings, invalid label values,
    contradictory labels and missing publication timestamps.

    Incremental, per subject (strategy replace_partitions on subject_key: the exam, the report or
    the quarantined record a finding is about). Exams with a record landed after the watermark,
    reports landed after it or whose pairing slot got a new exam record, and quarantine rows landed
    after it are recomputed; a touched subject with no finding left yields a marker row (no
    finding_key) so its old findings go.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_partitions',
    unique_key='subject_key',
    row_key='finding_key',
    on_schema_change='fail',
    meta={'watermark_column': 'ingested_at'},
) }}

{%- set landed_after = incremental_watermark() %}
{%- set string_type = dbt.type_string() %}

with

quarantined as (

    select
        {{ dbt.hash(dbt.concat([
            "'quarantine|'",
            'landing_run_id',
            "'|'",
            'source_file',
            "'|'",
            "coalesce(" ~ dbt.cast('record_position', string_type) ~ ", '')",
            "'|'",
            "coalesce(" ~ dbt.cast('label_position', string_type) ~ ", '')",
        ])) }} as subject_key,
        *
    from {{ ref('stg_neuralmed__quarantined_records') }}
    where ingested_at > {{ landed_after }}

),

exams as (

    select * from {{ ref('int_exams_deduplicated') }}
    where exam_last_ingested_at > {{ landed_after }}

),

exam_labels as (

    select * from {{ ref('bridge_exam_labels') }}
    {% if is_incremental() -%}
        where exam_key in (select exams.exam_key from exams)
    {%- endif %}

),

reports as (

    -- reports landed since, or whose slot got a new exam record (their pairing may differ): both have a
    -- newer last_ingested_at, and fct_medical_reports just rewrote them at its end (min/max pruning)
    select * from {{ ref('fct_medical_reports') }}
    where last_ingested_at > {{ landed_after }}

),

quarantine_findings as (

    select
        subject_key,
        {{ dbt.concat(["'quarantined_'", 'entity']) }} as finding_type,
        'error' as severity,
        entity,
        cast(null as {{ string_type }}) as exam_key,
        cast(null as {{ string_type }}) as report_key,
        {{ dbt.concat(['reason_code', "': '", 'reason']) }} as detail,
        source_file,
        record_position,
        label_position,
        landing_run_id,
        ingested_at
    from quarantined

),

report_findings as (

    select
        report_key as subject_key,
        case
            when not has_paired_exam then 'report_without_paired_exam'
            else 'report_exam_id_mismatch'
        end as finding_type,
        'warning' as severity,
        'medical_report' as entity,
        exam_key,
        report_key,
        {{ dbt.concat([
            "'report names exam id '",
            "coalesce(reported_exam_id_raw, '(none)')",
            "'; the exam at the same file and position has id '",
            "coalesce(" ~ dbt.cast('paired_exam_id', string_type) ~ ", '(none)')",
        ]) }} as detail,
        source_file,
        record_position,
        cast(null as integer) as label_position,
        landing_run_id,
        ingested_at
    from reports
    where is_exam_id_mismatch or not has_paired_exam

),

exam_flags as (

    select
        exam_key,
        'missing_exam_id' as finding_type,
        'the exam has no id; it is keyed by its file and position' as detail
    from exams
    where is_missing_exam_id

    union all

    select
        exam_key,
        'invalid_exam_id' as finding_type,
        {{ dbt.concat(["'exam id is not a whole number: '", 'exam_id_raw']) }} as detail
    from exams
    where is_invalid_exam_id

    union all

    select
        exam_key,
        'missing_body_part' as finding_type,
        'the exam has no body_part' as detail
    from exams
    where is_missing_body_part

    union all

    select
        exam_key,
        'unmapped_body_part' as finding_type,
        {{ dbt.concat(["'body part spelling not in body_part_taxonomy: '", 'body_part_raw']) }} as detail
    from exams
    where is_unmapped_body_part

    union all

    select
        exam_key,
        'missing_published_at' as finding_type,
        {{ dbt.concat([
            "'publication_timestamp missing or unreadable: '",
            "coalesce(publication_timestamp_raw, '(none)')",
        ]) }} as detail
    from exams
    where is_missing_published_at

),

exam_findings as (

    select
        exams.exam_key as subject_key,
        exam_flags.finding_type,
        'warning' as severity,
        'exam' as entity,
        exams.exam_key,
        cast(null as {{ string_type }}) as report_key,
        exam_flags.detail,
        exams.source_file,
        exams.record_position,
        cast(null as integer) as label_position,
        exams.landing_run_id,
        exams.ingested_at
    from exam_flags
    inner join exams
        on exam_flags.exam_key = exams.exam_key

),

label_findings as (

    select
        exam_key as subject_key,
        case when not is_label_mapped then 'unmapped_label' else 'invalid_label_value' end as finding_type,
        'warning' as severity,
        'exam_label' as entity,
        exam_key,
        cast(null as {{ string_type }}) as report_key,
        case
            when not is_label_mapped
                then {{ dbt.concat(["'label spelling not in label_taxonomy: '", "coalesce(label_raw, '(none)')"]) }}
            else {{ dbt.concat(["'label value is not a boolean: '", 'value_raw']) }}
        end as detail,
        source_file,
        record_position,
        label_position,
        landing_run_id,
        ingested_at
    from exam_labels
    where not is_label_mapped or is_invalid_value

),

contradiction_findings as (

    select
        exam_key as subject_key,
        'contradictory_labels' as finding_type,
        'warning' as severity,
        'exam' as entity,
        exam_key,
        cast(null as {{ string_type }}) as report_key,
        {{ dbt.concat(["'label asserted both true and false: '", 'label']) }} as detail,
        min(source_file) as source_file,
        min(record_position) as record_position,
        cast(null as integer) as label_position,
        min(landing_run_id) as landing_run_id,
        -- the labels all come from the exam's winning delivery: its landing time
        min(ingested_at) as ingested_at
    from exam_labels
    where is_positive is not null
    group by exam_key, label
    having min(case when is_positive then 1 else 0 end) <> max(case when is_positive then 1 else 0 end)

),

all_findings as (

    select * from quarantine_findings
    union all
    select * from report_findings
    union all
    select * from exam_findings
    union all
    select * from label_findings
    union all
    select * from contradiction_findings

),

findings as (

    select
        subject_key,
        {{ dbt.hash(dbt.concat([
            'finding_type',
            "'|'",
            "coalesce(landing_run_id, '')",
            "'|'",
            "coalesce(source_file, '')",
            "'|'",
            "coalesce(" ~ dbt.cast('record_position', string_type) ~ ", '')",
            "'|'",
            "coalesce(" ~ dbt.cast('label_position', string_type) ~ ", '')",
            "'|'",
            "coalesce(exam_key, '')",
            "'|'",
            "coalesce(detail, '')",
        ])) }} as finding_key,
        finding_type,
        severity,
        entity,
        exam_key,
        report_key,
        detail,
        source_file,
        cast(record_position as integer) as record_position,
        cast(label_position as integer) as label_position,
        landing_run_id,
        ingested_at
    from all_findings

),

final as (

    {% if is_incremental() %}

        -- one marker row (no finding_key) for a touched subject without findings, so its old ones go
        select
            touched_subjects.subject_key,
            findings.finding_key,
            findings.finding_type,
            findings.severity,
            findings.entity,
            findings.exam_key,
            findings.report_key,
            findings.detail,
            findings.source_file,
            findings.record_position,
            findings.label_position,
            findings.landing_run_id,
            findings.ingested_at
        from (
            select quarantined.subject_key from quarantined
            union distinct
            select reports.report_key as subject_key from reports
            union distinct
            select exams.exam_key as subject_key from exams
        ) as touched_subjects
        left join findings
            on touched_subjects.subject_key = findings.subject_key

    {% else %}

        select * from findings

    {% endif %}

)

select * from final
