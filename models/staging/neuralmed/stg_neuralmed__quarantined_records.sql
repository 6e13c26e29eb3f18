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
        entity,
        reason_code,
        reason,
        raw_excerpt,

        ----------  lineage
        {{ lineage_columns() }}

    from {{ source('neuralmed', 'quarantine') }}

)

select * from renamed
