{#- no `source` import CTE, on purpose: see doc block staging_landed_tables (models/staging/_docs.md) -#}

with

renamed as (

    select
        ----------  ids
        {{ integer_id('exam_id') }} as reported_exam_id,
        exam_id as reported_exam_id_raw,

        ----------  strings
        {{ pseudonym_of('reported_by', 'staff') }} as reported_by,
        text as report_text,
        extra_fields_json,

        ----------  dates
        {{ text_date('report_date') }} as report_date,
        report_date as report_date_raw,

        ----------  lineage
        {{ lineage_columns() }},
        record_position,
        {{ file_name_of('source_file') }} as source_file_name

    from {{ source('neuralmed', 'medical_reports') }}

)

select * from renamed
