{#
    The labels of each exam's winning delivery only: a re-delivered exam's labels REPLACE the
    older ones (they are never merged). A label belongs to the record with the same
    (landing_run_id, source_file, record_position).
#}

with

winning_records as (

    select
        exam_key,
        landing_run_id,
        source_file,
        record_position
    from {{ ref('int_exam_records_ranked') }}
    where is_winning_delivery

),

labels as (

    select * from {{ ref('int_exam_labels_canonicalised') }}

),

current_labels as (

    select
        {{ dbt.hash(dbt.concat([
            'winning_records.exam_key',
            "'|'",
            dbt.cast('labels.label_position', api.Column.translate_type('string')),
        ])) }} as exam_label_key,
        winning_records.exam_key,
        labels.label,
        labels.label_raw,
        labels.is_label_mapped,
        labels.is_positive,
        labels.value_raw,
        labels.is_invalid_value,
        labels.labelled_on,
        labels.labelled_by,
        labels.labelling_method,
        labels.classification_type,
        labels.label_position,
        labels.landing_run_id,
        labels.source_file,
        labels.record_position,
        labels.ingested_at
    from labels
    inner join winning_records
        on
            labels.landing_run_id = winning_records.landing_run_id
            and labels.source_file = winning_records.source_file
            and labels.record_position = winning_records.record_position

)

select * from current_labels
