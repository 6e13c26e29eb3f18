{#- no `source` import CTE, on purpose: see doc block staging_landed_tables (models/staging/_docs.md) -#}

with

renamed as (

    select
        ----------  ids
        record_position,
        label_position,

        ----------  strings
        classification as label_raw,
        {{ pseudonym_of('labelled_by', 'staff') }} as labelled_by,
        labelling_method,
        classification_type,
        value as value_raw,
        extra_fields_json,

        ----------  booleans
        {{ text_boolean('value') }} as is_positive,

        ----------  dates
        {{ text_date('labelled_date') }} as labelled_on,
        labelled_date as labelled_date_raw,

        ----------  lineage
        {{ lineage_columns() }}

    from {{ source('neuralmed', 'exam_labels') }}

)

select * from renamed
