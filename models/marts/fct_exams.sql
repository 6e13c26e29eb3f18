with

exams as (

    select * from {{ ref('int_exams_deduplicated') }}

),

labels as (

    select * from {{ ref('int_exam_labels_current') }}

),

reports as (

    select * from {{ ref('int_medical_reports_paired') }}

),

label_summary as (

    select
        exam_key,
        count(*) as label_count,
        sum(case when is_positive then 1 else 0 end) as positive_label_count,
        sum(case when is_label_mapped then 0 else 1 end) as unmapped_label_count,
        sum(case when is_invalid_value then 1 else 0 end) as invalid_label_value_count
    from labels
    group by exam_key

),

-- the same canonical label asserted both true and false on one exam
contradictions as (

    select
        exam_key,
        count(*) as contradictory_label_count
    from (
        select
            exam_key,
            label
        from labels
        where is_positive is not null
        group by exam_key, label
        having min(case when is_positive then 1 else 0 end) <> max(case when is_positive then 1 else 0 end)
    ) as contradictory_labels
    group by exam_key

),

reported_exams as (

    select distinct exam_key
    from reports
    where exam_key is not null

),

final as (

    select
        exams.exam_key,
        exams.exam_id,
        exams.exam_id_raw,
        exams.source_name as source,
        exams.dataset,
        exams.dataset_type,
        exams.body_part,
        exams.body_part_raw,
        exams.published_at,
        case
            when exams.image_file_name is not null then {{ dbt.hash('exams.image_file_name') }}
        end as image_key,
        exams.image_uri,
        exams.image_file_name,
        exams.labels_state,
        exams.label_entry_count,
        cast(coalesce(label_summary.label_count, 0) as integer) as label_count,
        cast(coalesce(label_summary.positive_label_count, 0) as integer) as positive_label_count,
        reported_exams.exam_key is not null as has_medical_report,
        cast(exams.delivery_count as integer) as delivery_count,
        exams.is_missing_exam_id,
        exams.is_invalid_exam_id,
        exams.is_missing_body_part,
        exams.is_unmapped_body_part,
        exams.is_missing_published_at,
        coalesce(label_summary.unmapped_label_count, 0) > 0 as has_unmapped_labels,
        coalesce(label_summary.invalid_label_value_count, 0) > 0 as has_invalid_label_values,
        coalesce(contradictions.contradictory_label_count, 0) > 0 as has_contradictory_labels,
        -- labels that were in the delivery but are not objects went to quarantine
        exams.label_entry_count > coalesce(label_summary.label_count, 0) as has_quarantined_labels,
        exams.extra_fields_json,
        exams.source_file,
        exams.source_file_sha256,
        exams.record_position,
        exams.landing_run_id,
        exams.delivery_date,
        exams.ingested_at
    from exams
    left join label_summary
        on exams.exam_key = label_summary.exam_key
    left join contradictions
        on exams.exam_key = contradictions.exam_key
    left join reported_exams
        on exams.exam_key = reported_exams.exam_key

)

select * from final
