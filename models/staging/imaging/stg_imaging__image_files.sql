with

source as (

    select * from {{ source('imaging', 'image_files') }}

),

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

    from source

)

select * from renamed
