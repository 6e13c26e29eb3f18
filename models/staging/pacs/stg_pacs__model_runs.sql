with

source as (

    select * from {{ source('pacs', 'model_runs') }}

),

renamed as (

    select
        ----------  ids
        run_id,

        ----------  strings
        model_name,
        model_version,
        weights_file,
        weights_sha256,
        device,
        medlake_version,
        torch_version,
        torchxrayvision_version,
        coalesce(run_kind, 'run') as run_kind,
        coalesce(run_status, 'finished') as run_status,
        stop_reason,
        gate_policy,

        ----------  numerics
        images_total,
        images_ok,
        images_failed,
        upload_s as upload_seconds,
        inference_s as inference_seconds,
        sr_build_s as sr_build_seconds,
        sr_upload_s as sr_upload_seconds,
        verify_s as verify_seconds,
        total_s as total_seconds,
        images_skipped,
        images_already_reported,
        srs_stored,
        srs_not_stored,

        ----------  booleans
        weights_trained,

        ----------  timestamps
        {{ utc_timestamp('started_at') }} as started_at,
        {{ utc_timestamp('finished_at') }} as finished_at

    from source

)

select * from renamed
