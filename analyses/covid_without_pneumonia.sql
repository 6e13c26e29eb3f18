{#
    Exams with a positive Covid label and no positive Pneumonia label in one month.
      month       YYYY-MM (var, default 2021-12)
      date_basis  'exam'  -> the exam's publication month (published_at, UTC)
                  'label' -> the month the positive Covid label was given (labelled_on)
    A positive Pneumonia label excludes the exam whatever its date.
    Compile: dbt compile --select covid_without_pneumonia --vars '{month: "2021-12", date_basis: label}'
    (`medlake query covid-without-pneumonia` runs the same logic.)
#}
{%- set month = var('month', '2021-12') -%}
{%- set date_basis = var('date_basis', 'exam') -%}
{%- set month_start = "cast('" ~ month ~ "-01' as date)" -%}
{%- set next_month_start = dbt.dateadd('month', 1, month_start) -%}
{%- if date_basis not in ['exam', 'label'] -%}
    {{ exceptions.raise_compiler_error("date_basis must be 'exam' or 'label', got " ~ date_basis) }}
{%- endif -%}

with

exams as (

    select * from {{ ref('fct_exams') }}

),

exam_labels as (

    select * from {{ ref('bridge_exam_labels') }}

),

covid_positive as (

    select distinct exam_key
    from exam_labels
    where
        label = 'Covid'
        and is_positive
        -- on the label basis, only Covid labels given in the month count
        and (
            '{{ date_basis }}' <> 'label'
            or (labelled_on >= {{ month_start }} and labelled_on < {{ next_month_start }})
        )

),

pneumonia_positive as (

    select distinct exam_key
    from exam_labels
    where label = 'Pneumonia' and is_positive

),

answer as (

    select
        exams.exam_id,
        exams.exam_key
    from exams
    inner join covid_positive
        on exams.exam_key = covid_positive.exam_key
    left join pneumonia_positive
        on exams.exam_key = pneumonia_positive.exam_key
    where
        pneumonia_positive.exam_key is null
        -- on the exam basis, only exams published in the month count
        and (
            '{{ date_basis }}' <> 'exam'
            or (exams.published_at >= {{ month_start }} and exams.published_at < {{ next_month_start }})
        )

)

select * from answer
order by exam_id, exam_key
