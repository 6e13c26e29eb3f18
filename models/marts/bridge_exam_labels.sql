with

labels as (

    select * from {{ ref('int_exam_labels_current') }}

),

final as (

    select
        exam_label_key,
        exam_key,
        label,
        label_raw,
        is_label_mapped,
        is_positive,
        value_raw,
        is_invalid_value,
        labelled_on,
        labelled_by,
        labelling_method,
        classification_type,
        label_position,
        source_file,
        record_position,
        landing_run_id
    from labels

)

select * from final
