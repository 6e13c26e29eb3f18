-- Nothing is silently dropped: every delivered exam record's exam (by id, or by lineage when
-- the id is unusable) has exactly one row in fct_exams.
with

delivered as (

    select distinct exam_key
    from {{ ref('int_exam_records_ranked') }}

),

exams as (

    select exam_key from {{ ref('fct_exams') }}

)

select delivered.exam_key
from delivered
left join exams
    on delivered.exam_key = exams.exam_key
where exams.exam_key is null
