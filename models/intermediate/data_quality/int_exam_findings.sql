{#
    One data-quality finding per flag raised on an exam's winning delivery: a missing or invalid
    id, a missing or unmapped body part, a missing publication timestamp. A view:
    fct_data_quality reads only the exams changed since its watermark (`exam_last_ingested_at`),
    and that filter reaches every arm of the union below.
#}

{{ config(materialized='view') }}

{%- set string_type = dbt.type_string() %}
{#- flag column -> (finding_type, detail) -#}
{%- set exam_flags = [
    ('is_missing_exam_id', 'missing_exam_id',
        "'the exam has no id; it is keyed by its file and position'"),
    ('is_invalid_exam_id', 'invalid_exam_id',
        dbt.concat(["'exam id is not a whole number: '", 'exam_id_raw'])),
    ('is_missing_body_part', 'missing_body_part',
        "'the exam has no body_part'"),
    ('is_unmapped_body_part', 'unmapped_body_part',
        dbt.concat(["'body part spelling not in body_part_taxonomy: '", 'body_part_raw'])),
    ('is_missing_published_at', 'missing_published_at',
        dbt.concat(["'publication_timestamp missing or unreadable: '", "coalesce(publication_timestamp_raw, '(none)')"])),
] %}

with

exams as (

    select * from {{ ref('int_exams_deduplicated') }}

),

findings as (

    {% for flag, finding_type, detail in exam_flags %}

        select
            exam_key as subject_key,
            '{{ finding_type }}' as finding_type,
            'warning' as severity,
            'exam' as entity,
            exam_key,
            cast(null as {{ string_type }}) as report_key,
            {{ detail }} as detail,
            source_file,
            record_position,
            cast(null as integer) as label_position,
            landing_run_id,
            ingested_at,
            exam_last_ingested_at
        from exams
        where {{ flag }}

        {% if not loop.last %}union all{% endif %}

    {% endfor %}

)

select * from findings
