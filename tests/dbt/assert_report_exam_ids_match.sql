{{ config(severity='warn') }}

-- Warns for every medical report whose exam_id differs from the id of the exam it pairs with
-- (same file name, same position). In the real sample all 122 do: the sender's exam_id is id + 1.
-- In an incremental build it counts the reports landed since the previous build (changed_rows.sql).
select
    report_key,
    source_file,
    record_position,
    reported_exam_id,
    paired_exam_id
from {{ ref('fct_medical_reports') }}
where is_exam_id_mismatch and {{ changed_rows_predicate('ingested_at') }}
