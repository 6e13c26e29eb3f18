with

reports as (

    select * from {{ ref('int_medical_reports_paired') }}

),

final as (

    select
        report_key,
        exam_key,
        reported_exam_id,
        reported_exam_id_raw,
        reported_exam_key,
        paired_exam_id,
        paired_exam_source_file,
        has_paired_exam,
        is_exam_id_mismatch,
        report_date,
        report_date_raw,
        reported_by,
        report_text,
        extra_fields_json,
        cast(delivery_count as integer) as delivery_count,
        source_file,
        source_file_sha256,
        record_position,
        landing_run_id,
        delivery_date,
        ingested_at
    from reports

)

select * from final
