with

source as (

    select * from {{ source('neuralmed', 'landed_files') }}

),

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

    from source

)

select * from renamed
