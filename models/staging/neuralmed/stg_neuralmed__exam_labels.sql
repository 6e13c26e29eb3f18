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
        record_position,
        label_position,

        ----------  strings
        classification as label_raw,
        labelled_by,
        labelling_method,
        classification_type,
        value as value_raw,
        extra_fields_json,

        ----------  booleans
        {{ text_boolean('value') }} as is_positive,

        ----------  dates
        {{ text_date('labelled_date') }} as labelled_on,
        labelled_date as labelled_date_raw,

        ----------  lineage
        {{ lineage_columns() }}

    from {{ source('neuralmed', 'exam_labels') }}

)

select * from renamed
