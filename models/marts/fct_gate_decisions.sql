with

gate_decisions as (

    select * from {{ ref('stg_pacs__gate_decisions') }}

),

body_part_taxonomy as (

    select * from {{ ref('body_part_taxonomy') }}

),

-- a batch re-written after a crash carries the same decision twice: keep one per run and instance
latest_decisions as (

    select
        *,
        row_number() over (
            partition by run_id, instance_source
            order by decided_at desc
        ) as decision_rank
    from gate_decisions

),

final as (

    select
        {{ dbt.hash(dbt.concat(['latest_decisions.run_id', "'|'", 'latest_decisions.instance_source'])) }}
            as gate_decision_key,
        latest_decisions.run_id,
        {{ dbt.hash('latest_decisions.file_name') }} as image_key,
        latest_decisions.instance_source,
        latest_decisions.file_name,
        latest_decisions.sop_instance_uid,
        latest_decisions.study_instance_uid,
        latest_decisions.series_instance_uid,
        latest_decisions.sop_class_uid,
        latest_decisions.orthanc_instance_id,
        latest_decisions.modality,
        latest_decisions.body_part_examined,
        body_part_taxonomy.body_part,
        latest_decisions.view_position,
        latest_decisions.photometric_interpretation,
        latest_decisions.number_of_frames,
        latest_decisions.gate_decision,
        latest_decisions.skip_reason_code,
        latest_decisions.skip_reason_detail,
        latest_decisions.gate_flags,
        latest_decisions.is_skipped,
        latest_decisions.decided_at,
        cast(latest_decisions.decided_at as date) as decided_on
    from latest_decisions
    left join body_part_taxonomy
        on {{ normalise_spelling('latest_decisions.body_part_examined') }} = body_part_taxonomy.spelling
    where latest_decisions.decision_rank = 1

)

select * from final
