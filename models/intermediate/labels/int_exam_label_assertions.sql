{#
    One row per exam and canonical label: how the exam's winning delivery asserts the label.
    The label-contradiction rule lives here and nowhere else: a label asserted both true and false
    on one exam (values that are not booleans do not count) is contradictory, and its CheXpert
    value is -1 (uncertain). fct_exams counts these rows, fct_data_quality turns the contradictory
    ones into findings, and `medlake dataset export` pivots `label_value` into its label columns.

    A view: its readers filter it to the exams they rebuild, so an incremental build groups only
    their labels, and nothing is copied.
#}

{{ config(materialized='view') }}

with

exam_labels as (

    select * from {{ ref('bridge_exam_labels') }}

),

assertions as (

    select
        exam_key,
        label,
        count(*) as assertion_count,
        sum(case when is_positive then 1 else 0 end) as positive_count,
        sum(case when not is_positive then 1 else 0 end) as negative_count,
        sum(case when is_label_mapped then 0 else 1 end) as unmapped_count,
        sum(case when is_invalid_value then 1 else 0 end) as invalid_value_count,
        -- all labels of an exam come from its winning delivery: one file, position, landing
        min(source_file) as source_file,
        min(record_position) as record_position,
        min(landing_run_id) as landing_run_id,
        min(ingested_at) as ingested_at
    from exam_labels
    group by exam_key, label

),

final as (

    select
        exam_key,
        label,
        assertion_count,
        positive_count,
        negative_count,
        unmapped_count,
        invalid_value_count,
        positive_count > 0 and negative_count > 0 as is_contradictory,
        -- CheXpert: 1 positive, 0 negative, -1 uncertain (contradictory), null when never asserted as a boolean
        case
            when positive_count > 0 and negative_count > 0 then -1
            when positive_count > 0 then 1
            when negative_count > 0 then 0
        end as label_value,
        source_file,
        record_position,
        landing_run_id,
        ingested_at
    from assertions

)

select * from final
