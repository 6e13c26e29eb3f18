{#
    Every data-quality finding in one place, one row per finding, so analysts see what the
    deliveries got wrong: quarantined files/records/labels (int_quarantine_findings), exam flags
    (int_exam_findings), report/exam id mismatches and unpaired reports, unmapped label spellings,
    invalid label values and contradictory labels (int_exam_label_assertions).

    It reads two marts on purpose: the report pairing lives only in fct_medical_reports and the
    winning labels only in bridge_exam_labels (both incremental); deriving them again here would
    repeat their logic and read every raw report and label on each build.

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

-- depends_on: {{ ref('int_exams_deduplicated') }} (read only by incremental builds)

{%- set landed_after = incremental_watermark() %}
{%- set string_type = dbt.type_string() %}
{#- a finding's columns between subject_key and ingested_at -#}
{%- set finding_columns = [
    'finding_type', 'severity', 'entity', 'exam_key', 'report_key', 'detail', 'source_file',
    'record_position', 'label_position', 'landing_run_id',
] %}

with

quarantine_findings as (

    select * from {{ ref('int_quarantine_findings') }}
    where ingested_at > {{ landed_after }}

),

exam_findings as (

    select
        subject_key,
        {{ finding_columns | join(',\n        ') }},
        ingested_at
    from {{ ref('int_exam_findings') }}
    where exam_last_ingested_at > {{ landed_after }}

),

{% if is_incremental() %}

    -- the exams with a record landed since: their findings are recomputed
    exams as (

        select exam_key from {{ ref('int_exams_deduplicated') }}
        where exam_last_ingested_at > {{ landed_after }}

    ),

{% endif %}

exam_labels as (

    select * from {{ ref('bridge_exam_labels') }}
    {% if is_incremental() -%}
        where exam_key in (select exams.exam_key from exams)
    {%- endif %}

),

label_assertions as (

    select * from {{ ref('int_exam_label_assertions') }}
    where
        is_contradictory
    {% if is_incremental() %}
        and exam_key in (select exams.exam_key from exams)
    {% endif %}

),

reports as (

    -- reports landed since, or whose slot got a new exam record (their pairing may differ): both have a
    -- newer last_ingested_at, and fct_medical_reports just rewrote them at its end (min/max pruning)
    select * from {{ ref('fct_medical_reports') }}
    where last_ingested_at > {{ landed_after }}

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
        source_file,
        record_position,
        cast(null as integer) as label_position,
        landing_run_id,
        ingested_at
    from label_assertions

),

all_findings as (

    {% for findings in ['quarantine_findings', 'report_findings', 'exam_findings', 'label_findings',
                        'contradiction_findings'] -%}
        select
            subject_key,
            {{ finding_columns | join(',\n            ') }},
            ingested_at
        from {{ findings }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

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
            {% for column in finding_columns -%}
                findings.{{ column }},
            {% endfor -%}
            findings.ingested_at
        from (
            select quarantine_findings.subject_key from quarantine_findings
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
