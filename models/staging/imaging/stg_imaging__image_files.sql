{#- no `source` import CTE, on purpose: see doc block staging_landed_tables (models/staging/_docs.md) -#}

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
