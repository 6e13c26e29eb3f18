{#- no `source` import CTE, on purpose: see doc block staging_landed_tables (models/staging/_docs.md) -#}

with

renamed as (

    select
        ----------  ids
        file_name,
        {{ opted_in_patient_id('patient_id') }} as patient_id,
        {{ pseudonym_of('patient_id', 'patient') }} as patient_pseudonym,
        study_instance_uid,
        series_instance_uid,
        sop_instance_uid,
        sop_class_uid,

        ----------  strings
        patient_sex,
        patient_age,
        modality,
        body_part_examined,
        view_position,
        study_description,
        manufacturer,
        photometric_interpretation,
        transfer_syntax_uid,

        ----------  numerics
        {{ try_cast_as('series_number', api.Column.translate_type('integer')) }} as series_number,
        {{ try_cast_as('instance_number', api.Column.translate_type('integer')) }} as instance_number,
        rows as pixel_rows,
        columns as pixel_columns,
        bits_allocated,
        bits_stored,

        ----------  booleans
        has_file_meta,

        ----------  dates (DICOM DA is YYYYMMDD)
        {{ date_from_yyyymmdd('study_date') }} as study_date,

        ----------  lineage
        {{ lineage_columns() }}

    from {{ source('imaging', 'dicom_instances') }}

)

select * from renamed
