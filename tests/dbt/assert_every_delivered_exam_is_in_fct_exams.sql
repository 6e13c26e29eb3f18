-- Nothing is silently dropped: every delivered exam record's exam (by id, or by lineage when
-- the id is unusable) has exactly one row in fct_exams.
-- In an incremental build only the exams that build changed are checked (changed_rows.sql).
with

delivered as (

    select distinct exam_key
    from {{ ref('int_exam_records_ranked') }}
    where {{ changed_rows_predicate('exam_last_ingested_at') }}

),

exams as (

    select exam_key from {{ ref('fct_exams') }}

)

select delivered.exam_key
from delivered
left join exams
    on delivered.exam_key = exams.exam_key
where exams.exam_key is null
