{#
    One row per exam with labels: the counts and flags fct_exams reports about them, summed from
    int_exam_label_assertions. A view, filtered by its reader to the exams it rebuilds.
#}

{{ config(materialized='view') }}

with

label_assertions as (

    select * from {{ ref('int_exam_label_assertions') }}

),

summary as (

    select
        exam_key,
        sum(assertion_count) as label_count,
        sum(positive_count) as positive_label_count,
        sum(unmapped_count) as unmapped_label_count,
        sum(invalid_value_count) as invalid_label_value_count,
        sum(case when is_contradictory then 1 else 0 end) as contradictory_label_count
    from label_assertions
    group by exam_key

)

select * from summary
