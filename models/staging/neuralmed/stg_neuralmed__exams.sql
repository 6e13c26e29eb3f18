{#- no `source` import CTE, on purpose: see doc block staging_landed_tables (models/staging/_docs.md) -#}

with

renamed as (

    select
        ----------  ids
        {{ integer_id('id') }} as exam_id,
        id as exam_id_raw,

        ----------  strings
        {{ unwrap_single_element_list('source') }} as source_name,
        source as source_raw,
        dataset_type,
        dataset,
        body_part as body_part_raw,
        image_path as image_uri,
        {{ file_name_of('image_path') }} as image_file_name,
        labels_state,
        extra_fields_json,

        ----------  numerics
        label_entry_count,

        ----------  timestamps
        {{ epoch_or_iso_timestamp('publication_timestamp') }} as published_at,
        publication_timestamp as publication_timestamp_raw,

        ----------  lineage
        {{ lineage_columns() }},
        record_position,
        {{ file_name_of('source_file') }} as source_file_name

    from {{ source('neuralmed', 'exams') }}

)

select * from renamed
