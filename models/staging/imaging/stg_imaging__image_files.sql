{#-
    No `source` import CTE here, on purpose: incremental models filter this view on
    `ingested_at > <watermark>`, and DuckDB pushes that filter into the Parquet scan (skipping
    every row group landed earlier, from its statistics) only when the cast of ingested_at sits
    directly on the scan, not behind a `select *` layer.
-#}

with

renamed as (

    select
        ----------  strings
        file_name,
        media_type,

        ----------  numerics
        size_bytes,

        ----------  booleans
        is_dicom,

        ----------  lineage
        {{ lineage_columns() }}

    from {{ source('imaging', 'image_files') }}

)

select * from renamed
