{#
    Every data-quality finding in one place, one row per finding, so analysts see what the
    deliveries got wrong: quarantined files/records/labels, report/exam id mismatches,
    unpaired reports, missing or invalid exam ids, unmapped spellings, invalid label values,
    contradictory labels and missing publication timestamps.
#}

{%- set string_type = dbt.type_string() %}

with

quarantined as (

    select * from {{ ref('stg_neuralmed__quarantined_records') }}

),

exams as (

    select * from {{ ref('int_exams_deduplicated') }}

),

exam_labels as (

    select * from {{ ref('int_exam_labels_current') }}

),

reports as (

    select * from {{ ref('int_medical_reports_paired') }}

),

quarantine_findings as (

    select
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
        cast(null as timestamp) as ingested_at
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

final as (

    select
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

)

select * from final
