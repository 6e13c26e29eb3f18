-- Every label of an exam's winning delivery is in bridge_exam_labels, and nothing else is:
-- compares per-exam label counts between the delivered labels and the bridge.
with

delivered as (

    select
        records.exam_key,
        count(labels.label_position) as delivered_label_count
    from {{ ref('int_exam_records_ranked') }} as records
    left join {{ ref('stg_neuralmed__exam_labels') }} as labels
        on
            records.landing_run_id = labels.landing_run_id
            and records.source_file = labels.source_file
            and records.record_position = labels.record_position
    where records.is_winning_delivery
    group by records.exam_key

),

bridged as (

    select
        exam_key,
        count(*) as bridged_label_count
    from {{ ref('bridge_exam_labels') }}
    group by exam_key

)

select
    delivered.exam_key,
    delivered.delivered_label_count,
    coalesce(bridged.bridged_label_count, 0) as bridged_label_count
from delivered
left join bridged
    on delivered.exam_key = bridged.exam_key
where delivered.delivered_label_count <> coalesce(bridged.bridged_label_count, 0)
