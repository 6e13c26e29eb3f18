with

source as (

    select * from {{ source('pacs', 'pacs_gate_decisions') }}

),

renamed as (

    select
        ----------  ids
        run_id,
        sop_instance_uid,
        study_instance_uid,
        series_instance_uid,
        sop_class_uid,
        orthanc_instance_id,

        ----------  strings
        source as instance_source,
        file_name,
        modality,
        body_part_examined,
        view_position,
        photometric_interpretation,
        decision as gate_decision,
        reason_code as skip_reason_code,
        reason_detail as skip_reason_detail,
        gate_flags,

        ----------  numerics
        number_of_frames,

        ----------  booleans
        decision = 'skipped' as is_skipped,

        ----------  timestamps
        {{ utc_timestamp('decided_at') }} as decided_at

    from source

)

select * from renamed
