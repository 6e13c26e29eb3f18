{#- no `source` import CTE, on purpose: see doc block staging_landed_tables (models/staging/_docs.md) -#}

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
