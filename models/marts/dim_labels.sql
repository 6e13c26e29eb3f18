with

vocabulary as (

    select * from {{ ref('label_vocabulary') }}

),

exam_labels as (

    select
        label,
        exam_key,
        is_positive
    from {{ ref('bridge_exam_labels') }}
    where label is not null

),

predictions as (

    select * from {{ ref('fct_predictions') }}

),

-- one pass over the bridge (4 M rows at 1 M exams): this is the only mart rebuilt from all labels
exam_label_usage as (

    select
        label,
        count(*) as assertion_count,
        count(distinct case when is_positive then exam_key end) as positive_exam_count
    from exam_labels
    group by label

),

-- labels seen in deliveries or predictions that the vocabulary does not know: kept, flagged
observed_labels as (

    select label
    from exam_label_usage

    union distinct

    select label
    from predictions
    where label is not null

),

all_labels as (

    select
        label,
        description,
        in_chexpert,
        in_nih_chestxray14,
        xrv_pathology,
        true as is_in_vocabulary
    from vocabulary

    union all

    select
        observed_labels.label,
        cast(null as {{ dbt.type_string() }}) as description,
        false as in_chexpert,
        false as in_nih_chestxray14,
        cast(null as {{ dbt.type_string() }}) as xrv_pathology,
        false as is_in_vocabulary
    from observed_labels
    left join vocabulary
        on observed_labels.label = vocabulary.label
    where vocabulary.label is null

),

final as (

    select
        all_labels.label,
        all_labels.description,
        all_labels.in_chexpert,
        all_labels.in_nih_chestxray14,
        all_labels.xrv_pathology,
        all_labels.is_in_vocabulary,
        cast(coalesce(exam_label_usage.assertion_count, 0) as integer) as assertion_count,
        cast(coalesce(exam_label_usage.positive_exam_count, 0) as integer) as positive_exam_count
    from all_labels
    left join exam_label_usage
        on all_labels.label = exam_label_usage.label

)

select * from final
