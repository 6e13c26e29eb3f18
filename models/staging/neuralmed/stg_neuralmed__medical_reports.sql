{#-
    No `source` import CTE here, on purpose: incremental models filter this view on
    `ingested_at > <watermark>`, and DuckDB pushes that filter into the Parquet scan (skipping
    every row group landed earlier, from its statistics) only when the cast of ingested_at sits
    directly on the scan, not behind a `select *` layer.
-#}

with

renamed as (

    select
        ----------  ids
        {{ integer_id('exam_id') }} as reported_exam_id,
        exam_id as reported_exam_id_raw,

        ----------  strings
        reported_by,
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
