with

source as (

    select * from {{ source('pacs', 'predictions') }}

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
        sr_sop_instance_uid,

        ----------  strings
        source_file,
        file_name,
        pathology,
        model_name,
        model_version,
        weights_sha256,
        sr_status,
        gate_flags,

        ----------  numerics
        score,
        threshold,

        ----------  booleans
        is_positive,
        weights_trained,

        ----------  timestamps
        {{ utc_timestamp('predicted_at') }} as predicted_at

    from source

)

select * from renamed
