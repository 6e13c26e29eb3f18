with

model_runs as (

    select * from {{ ref('stg_pacs__model_runs') }}

),

predictions as (

    select * from {{ ref('fct_predictions') }}

),

uploads as (

    select * from {{ ref('stg_pacs__uploads') }}

),

gate_decisions as (

    select * from {{ ref('stg_pacs__gate_decisions') }}

),

latest_runs as (

    select
        *,
        row_number() over (partition by run_id order by finished_at desc) as run_rank
    from model_runs

),

prediction_summary as (

    select
        run_id,
        count(*) as prediction_count,
        count(distinct file_name) as images_predicted,
        sum(case when is_positive then 1 else 0 end) as positive_prediction_count
    from predictions
    group by run_id

),

upload_summary as (

    select
        run_id,
        sum(case when upload_kind = 'image' and upload_status in ('Success', 'AlreadyStored') then 1 else 0 end)
            as images_stored,
        sum(case when upload_kind = 'sr' and upload_status in ('Success', 'AlreadyStored') then 1 else 0 end)
            as srs_stored,
        sum(case when upload_status = 'Failed' then 1 else 0 end) as uploads_failed,
        sum(case when upload_kind = 'sr' and upload_status = 'Failed' then 1 else 0 end) as srs_not_stored
    from uploads
    group by run_id

),

gate_summary as (

    select
        run_id,
        count(distinct case when is_skipped and skip_reason_code <> 'already_reported' then instance_source end)
            as images_skipped,
        count(distinct case when skip_reason_code = 'already_reported' then instance_source end)
            as images_already_reported,
        count(distinct case when not is_skipped and gate_flags is not null then instance_source end)
            as images_flagged
    from gate_decisions
    group by run_id

),

final as (

    select
        latest_runs.run_id,
        latest_runs.model_name,
        latest_runs.model_version,
        latest_runs.weights_file,
        latest_runs.weights_sha256,
        latest_runs.weights_trained,
        latest_runs.device,
        latest_runs.started_at,
        latest_runs.finished_at,
        cast(latest_runs.started_at as date) as run_date,
        latest_runs.images_total,
        latest_runs.images_ok,
        latest_runs.images_failed,
        cast(
            case
                when latest_runs.images_total > 0
                    then cast(latest_runs.images_failed as {{ type_double() }}) / latest_runs.images_total
            end as {{ type_double() }}
        ) as failure_rate,
        cast(coalesce(prediction_summary.prediction_count, 0) as integer) as prediction_count,
        cast(coalesce(prediction_summary.images_predicted, 0) as integer) as images_predicted,
        cast(coalesce(prediction_summary.positive_prediction_count, 0) as integer) as positive_prediction_count,
        cast(coalesce(upload_summary.images_stored, 0) as integer) as images_stored,
        cast(coalesce(upload_summary.srs_stored, 0) as integer) as srs_stored,
        cast(coalesce(upload_summary.uploads_failed, 0) as integer) as uploads_failed,
        cast(coalesce(upload_summary.srs_not_stored, 0) as integer) as srs_not_stored,
        cast(coalesce(gate_summary.images_skipped, 0) as integer) as images_skipped,
        cast(coalesce(gate_summary.images_already_reported, 0) as integer) as images_already_reported,
        cast(coalesce(gate_summary.images_flagged, 0) as integer) as images_flagged,
        latest_runs.run_kind,
        latest_runs.run_status,
        latest_runs.stop_reason,
        latest_runs.gate_policy,
        latest_runs.upload_seconds,
        latest_runs.inference_seconds,
        latest_runs.sr_build_seconds,
        latest_runs.sr_upload_seconds,
        latest_runs.verify_seconds,
        latest_runs.total_seconds,
        latest_runs.medlake_version,
        latest_runs.torch_version,
        latest_runs.torchxrayvision_version
    from latest_runs
    left join prediction_summary
        on latest_runs.run_id = prediction_summary.run_id
    left join upload_summary
        on latest_runs.run_id = upload_summary.run_id
    left join gate_summary
        on latest_runs.run_id = gate_summary.run_id
    where latest_runs.run_rank = 1

)

select * from final
