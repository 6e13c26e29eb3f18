{#
    One data-quality finding per flag raised on an exam's winning delivery: a missing or invalid
    id, a missing or unmapped body part, a missing publication timestamp. A view:
    fct_data_quality reads only the exams changed since its watermark (`exam_last_ingested_at`).
    The exams are read once and crossed with the flag list (not one union arm per flag): a CTE
    read five times would be materialised by DuckDB, and the watermark filter would no longer
    prune int_exam_records_ranked's row groups.
#}

{{ config(materialized='view') }}

{%- set string_type = dbt.type_string() %}
{#- finding_type -> (flag column, detail) -#}
{%- set exam_flags = {
    'missing_exam_id': ('is_missing_exam_id', "'the exam has no id; it is keyed by its file and position'"),
    'invalid_exam_id': ('is_invalid_exam_id', dbt.concat(["'exam id is not a whole number: '", 'exams.exam_id_raw'])),
    'missing_body_part': ('is_missing_body_part', "'the exam has no body_part'"),
    'unmapped_body_part': (
        'is_unmapped_body_part', dbt.concat(["'body part spelling not in body_part_taxonomy: '", 'exams.body_part_raw'])
    ),
    'missing_published_at': ('is_missing_published_at', dbt.concat([
        "'publication_timestamp missing or unreadable: '", "coalesce(exams.publication_timestamp_raw, '(none)')",
    ])),
} %}

with

exams as (

    select * from {{ ref('int_exams_deduplicated') }}

),

finding_types as (

    {% for finding_type in exam_flags -%}
        select '{{ finding_type }}' as finding_type
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

findings as (

    select
        exams.exam_key as subject_key,
        finding_types.finding_type,
        'warning' as severity,
        'exam' as entity,
        exams.exam_key,
        cast(null as {{ string_type }}) as report_key,
        case finding_types.finding_type
            {% for finding_type, (flag, detail) in exam_flags.items() -%}
                when '{{ finding_type }}' then {{ detail }}
            {% endfor -%}
        end as detail,
        exams.source_file,
        exams.record_position,
        cast(null as integer) as label_position,
        exams.landing_run_id,
        exams.ingested_at,
        exams.exam_last_ingested_at
    from exams
    cross join finding_types
    where
        case finding_types.finding_type
            {% for finding_type, (flag, detail) in exam_flags.items() -%}
                when '{{ finding_type }}' then exams.{{ flag }}
            {% endfor -%}
        end

)

select * from findings
