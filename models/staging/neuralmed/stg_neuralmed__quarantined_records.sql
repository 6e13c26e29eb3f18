{#- no `source` import CTE, on purpose: see doc block staging_landed_tables (models/staging/_docs.md) -#}

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
