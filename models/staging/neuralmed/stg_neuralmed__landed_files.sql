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
        entity,

        ----------  numerics
        size_bytes,
        records_landed,
        records_quarantined,

        ----------  lineage
        {{ lineage_columns() }}

    from {{ source('neuralmed', 'landed_files') }}

)

select * from renamed
