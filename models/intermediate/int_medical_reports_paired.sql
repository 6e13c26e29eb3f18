{#
    One row per medical report, paired with its exam: the exam record at the SAME file name
    (`medical_report/x.json` <-> `exam/x.json`) and the SAME array position. The report's own
    `exam_id` is compared with the paired exam's id; a difference is a data-quality finding,
    not a reason to re-pair (in the real sample every report names exam id + 1).
#}

with

reports as (

    select * from {{ ref('stg_neuralmed__medical_reports') }}

),

exam_records as (

    select * from {{ ref('int_exam_records_ranked') }}

),

exams as (

    select
        exam_key,
        exam_id
    from {{ ref('int_exams_deduplicated') }}

),

-- A report is its file path and position; a corrected re-delivery of the same file replaces it.
latest_reports as (

    select
        *,
        row_number() over (
            partition by source_file, record_position
            order by ingested_at desc, landing_run_id desc
        ) as report_rank,
        count(*) over (partition by source_file, record_position) as delivery_count
    from reports

),

candidate_pairs as (

    select
        latest_reports.source_file,
        latest_reports.record_position,
        exam_records.exam_key,
        exam_records.exam_id,
        exam_records.source_file as exam_source_file,
        -- when the exam file was delivered more than once, prefer the copy landed with the
        -- report, then the latest one
        row_number() over (
            partition by latest_reports.source_file, latest_reports.record_position
            order by
                case when exam_records.landing_run_id = latest_reports.landing_run_id then 0 else 1 end,
                exam_records.ingested_at desc,
                exam_records.source_file desc
        ) as pair_rank
    from latest_reports
    inner join exam_records
        on
            latest_reports.source_file_name = exam_records.source_file_name
            and latest_reports.record_position = exam_records.record_position
    where latest_reports.report_rank = 1

),

paired as (

    select
        {{ dbt.hash(dbt.concat([
            'latest_reports.source_file',
            "'|'",
            dbt.cast('latest_reports.record_position', api.Column.translate_type('string')),
        ])) }} as report_key,
        candidate_pairs.exam_key,
        latest_reports.reported_exam_id,
        latest_reports.reported_exam_id_raw,
        reported_exams.exam_key as reported_exam_key,
        candidate_pairs.exam_id as paired_exam_id,
        candidate_pairs.exam_source_file as paired_exam_source_file,
        candidate_pairs.exam_key is not null as has_paired_exam,
        -- ids that differ, or exactly one of them missing
        candidate_pairs.exam_key is not null
        and coalesce(
            latest_reports.reported_exam_id <> candidate_pairs.exam_id,
            (latest_reports.reported_exam_id is null) <> (candidate_pairs.exam_id is null)
        ) as is_exam_id_mismatch,
        latest_reports.report_date,
        latest_reports.report_date_raw,
        latest_reports.reported_by,
        latest_reports.report_text,
        latest_reports.extra_fields_json,
        latest_reports.delivery_count,
        latest_reports.landing_run_id,
        latest_reports.delivery_date,
        latest_reports.ingested_at,
        latest_reports.source_file,
        latest_reports.source_file_sha256,
        latest_reports.record_position
    from latest_reports
    left join candidate_pairs
        on
            latest_reports.source_file = candidate_pairs.source_file
            and latest_reports.record_position = candidate_pairs.record_position
            and candidate_pairs.pair_rank = 1
    left join exams as reported_exams
        on latest_reports.reported_exam_id = reported_exams.exam_id
    where latest_reports.report_rank = 1

)

select * from paired
