with

source as (

    select * from {{ source('neuralmed', 'quarantine') }}

),

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

    from source

)

select * from renamed
