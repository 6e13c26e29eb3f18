-- Every label of an exam's winning delivery is in bridge_exam_labels, and nothing else is:
-- compares per-exam label counts between the landed labels (raw, by lineage) and the bridge.
-- In an incremental build only the exams that build changed are compared (changed_rows.sql).
with

winning_records as (

    select
        exam_key,
        landing_run_id,
        source_file,
        record_position
    from {{ ref('int_exam_records_ranked') }}
    where is_winning_delivery and {{ changed_rows_predicate('exam_last_ingested_at') }}

),

delivered as (

    select
        winning_records.exam_key,
        count(labels.label_position) as delivered_label_count
    from winning_records
    left join {{ source('neuralmed', 'exam_labels') }} as labels
        on
            winning_records.landing_run_id = labels.landing_run_id
            and winning_records.source_file = labels.source_file
            and winning_records.record_position = labels.record_position
    group by winning_records.exam_key

),

bridged as (

    select
        exam_key,
        count(*) as bridged_label_count
    from {{ ref('bridge_exam_labels') }}
    where exam_key in (select delivered.exam_key from delivered)
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
