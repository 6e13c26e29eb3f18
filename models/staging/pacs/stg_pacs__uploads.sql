with

source as (

    select * from {{ source('pacs', 'pacs_uploads') }}

),

renamed as (

    select
        ----------  ids
        run_id,
        sop_instance_uid,
        study_instance_uid,
        series_instance_uid,
        {{ opted_in_patient_id('patient_id') }} as patient_id,
        {{ pseudonym_of('patient_id', 'patient') }} as patient_pseudonym,
        orthanc_instance_id,
        orthanc_series_id,
        orthanc_study_id,
        -- Orthanc's patient id is a plain SHA-1 of the Patient ID: reversible by trying every record number
        {{ opted_in_patient_id('orthanc_patient_id') }} as orthanc_patient_id,
        referenced_sop_instance_uid,

        ----------  strings
        kind as upload_kind,
        source_file,
        file_name,
        source_file_sha256,
        status as upload_status,
        error as error_message,

        ----------  timestamps
        {{ utc_timestamp('uploaded_at') }} as uploaded_at

    from source

)

select * from renamed
