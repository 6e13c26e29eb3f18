{#
    Every delivered label assertion with its canonical label: the raw spelling is matched
    case-insensitively against the label_taxonomy seed (covid19 / COVID-19 / covid -> Covid);
    an unknown spelling becomes its Title-cased self and is flagged, never dropped.
    A view: only bridge_exam_labels reads it (an incremental build only the labels landed after
    its watermark, a pruned Parquet read), so delivered labels are never copied.
#}

{{ config(materialized="view") }}

with

exam_labels as (

    select * from {{ ref('stg_neuralmed__exam_labels') }}

),

label_taxonomy as (

    select * from {{ ref('label_taxonomy') }}

),

canonicalised as (

    select
        exam_labels.landing_run_id,
        exam_labels.source_file,
        exam_labels.record_position,
        exam_labels.label_position,
        exam_labels.label_raw,
        coalesce(
            label_taxonomy.label,
            {{ title_case('exam_labels.label_raw') }}
        ) as label,
        label_taxonomy.spelling is not null as is_label_mapped,
        exam_labels.is_positive,
        exam_labels.value_raw,
        exam_labels.value_raw is not null and exam_labels.is_positive is null as is_invalid_value,
        exam_labels.labelled_on,
        exam_labels.labelled_date_raw,
        exam_labels.labelled_by,
        exam_labels.labelling_method,
        exam_labels.classification_type,
        exam_labels.extra_fields_json,
        exam_labels.ingested_at
    from exam_labels
    left join label_taxonomy
        on {{ normalise_spelling('exam_labels.label_raw') }} = label_taxonomy.spelling

)

select * from canonicalised
