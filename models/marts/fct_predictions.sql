with

predictions as (

    select * from {{ ref('stg_pacs__predictions') }}

),

stored_srs as (

    -- an SR stored by a later run (after an outage) makes the earlier prediction's SR stored
    select distinct sop_instance_uid as sr_sop_instance_uid
    from {{ ref('stg_pacs__uploads') }}
    where upload_kind = 'sr' and upload_status in ('Success', 'AlreadyStored')

),

label_taxonomy as (

    select * from {{ ref('label_taxonomy') }}

),

-- a run that wrote the same image x pathology twice (e.g. re-written after a crash) counts once
latest_predictions as (

    select
        *,
        row_number() over (
            partition by run_id, file_name, pathology
            order by predicted_at desc, sop_instance_uid asc
        ) as prediction_rank
    from predictions

),

final as (

    select
        {{ dbt.hash(dbt.concat([
            'latest_predictions.run_id',
            "'|'",
            'latest_predictions.file_name',
            "'|'",
            'latest_predictions.pathology',
        ])) }} as prediction_key,
        latest_predictions.run_id,
        {{ dbt.hash('latest_predictions.file_name') }} as image_key,
        latest_predictions.file_name,
        latest_predictions.sop_instance_uid,
        latest_predictions.study_instance_uid,
        latest_predictions.series_instance_uid,
        latest_predictions.patient_id,
        latest_predictions.patient_pseudonym,
        latest_predictions.orthanc_instance_id,
        latest_predictions.pathology,
        coalesce(label_taxonomy.label, {{ title_case('latest_predictions.pathology') }}) as label,
        latest_predictions.score,
        latest_predictions.threshold,
        latest_predictions.is_positive,
        latest_predictions.model_name,
        latest_predictions.model_version,
        latest_predictions.weights_sha256,
        latest_predictions.weights_trained,
        latest_predictions.sr_sop_instance_uid,
        case
            when stored_srs.sr_sop_instance_uid is not null or latest_predictions.sr_status = 'stored' then 'stored'
            else 'not_stored'
        end as sr_status,
        latest_predictions.gate_flags,
        latest_predictions.predicted_at,
        cast(latest_predictions.predicted_at as date) as predicted_on
    from latest_predictions
    left join label_taxonomy
        on {{ normalise_spelling('latest_predictions.pathology') }} = label_taxonomy.spelling
    left join stored_srs
        on latest_predictions.sr_sop_instance_uid = stored_srs.sr_sop_instance_uid
    where latest_predictions.prediction_rank = 1

)

select * from final
