{#
    Exams of one canonical body part with many labels, with their images.
      body_part   canonical body part (var, default Chest; matched case-insensitively)
      min_labels  minimum label assertions (var, default 6 = "more than 5")
    Compile: dbt compile --select chest_many_labels --vars '{body_part: Chest, min_labels: 6}'
    (`medlake query chest-many-labels` runs the same logic and adds a sample with labels.)
#}
{%- set body_part = var('body_part', 'Chest') -%}
{%- set min_labels = var('min_labels', 6) | int -%}

with

exams as (

    select * from {{ ref('fct_exams') }}

),

images as (

    select * from {{ ref('dim_images') }}

),

answer as (

    select
        exams.exam_id,
        exams.exam_key,
        exams.body_part,
        exams.label_count,
        exams.image_uri,
        images.file_name,
        images.is_file_available,
        images.modality,
        images.pixel_rows,
        images.pixel_columns
    from exams
    left join images
        on exams.image_key = images.image_key
    where
        lower(exams.body_part) = lower('{{ body_part }}')
        and exams.label_count >= {{ min_labels }}

)

select * from answer
order by exam_key
