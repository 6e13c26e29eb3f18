{#
    One row per image file name known anywhere: referenced by an exam, present as a landed
    file, read as a DICOM header, uploaded to Orthanc or classified. Each source contributes
    its latest row for the name; exams reach images only by file name.

    Incremental, per image (strategy replace_partitions): the names int_image_changes lists (an
    exam that references or referenced the image got a new record, its file or DICOM header
    landed after the watermark, or PACS touched it) are recomputed from all their rows. An image
    nothing refers to any more (its only exam now points elsewhere) yields a marker row without
    file_name and is deleted.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_partitions',
    unique_key='image_key',
    row_key='file_name',
    on_schema_change='fail',
    meta={'watermark_column': 'last_ingested_at'},
) }}

-- depends_on: {{ ref('int_image_changes') }} (read only by incremental builds)

{%- set dicom_columns = [
    'patient_id', 'patient_pseudonym', 'study_instance_uid', 'series_instance_uid', 'sop_instance_uid', 'sop_class_uid', 'modality',
    'body_part_examined', 'view_position', 'study_date', 'pixel_rows', 'pixel_columns', 'bits_stored',
    'photometric_interpretation', 'transfer_syntax_uid',
] %}
{%- set pacs_columns = ['orthanc_instance_id', 'orthanc_series_id', 'orthanc_study_id', 'orthanc_patient_id'] %}
{#- the columns between image_key and last_ingested_at, in contract order -#}
{%- set image_columns = [
    'file_name', 'image_uri', 'exam_count', 'is_file_available', 'source_file', 'object_sha256', 'object_path',
    'size_bytes', 'media_type', 'is_dicom', 'has_dicom_header',
] + dicom_columns + pacs_columns + [
    'is_in_pacs', 'has_sr', 'prediction_count', 'prediction_run_count',
] %}

with

pacs_images as (

    select * from {{ ref('int_pacs_images') }}

),

sr_references as (

    select * from {{ ref('int_pacs_sr_references') }}

),

{% if is_incremental() %}

    -- the names landed since, or touched by PACS: recomputed (int_image_changes)
    touched_names as (

        select * from {{ ref('int_image_changes') }}

    ),

{% endif %}

exams as (

    select
        image_file_name as file_name,
        image_uri,
        published_at,
        exam_key,
        exam_last_ingested_at
    from {{ ref('int_exam_records_ranked') }}
    where
        is_winning_delivery
        and image_file_name is not null
    {% if is_incremental() %}
        and image_file_name in (select touched_names.file_name from touched_names)
    {% endif %}

),

image_files as (

    select * from {{ ref('stg_imaging__image_files') }}
    {% if is_incremental() -%}
        where file_name in (select touched_names.file_name from touched_names)
    {%- endif %}

),

dicom_instances as (

    select * from {{ ref('stg_imaging__dicom_instances') }}
    {% if is_incremental() -%}
        where file_name in (select touched_names.file_name from touched_names)
    {%- endif %}

),

exam_references as (

    select
        file_name,
        image_uri,
        row_number() over (
            partition by file_name
            order by published_at desc nulls last, exam_key asc
        ) as reference_rank,
        count(*) over (partition by file_name) as exam_count
    from exams

),

latest_files as (

    select
        *,
        row_number() over (partition by file_name order by ingested_at desc, source_file desc) as file_rank
    from image_files

),

latest_dicoms as (

    select
        *,
        row_number() over (partition by file_name order by ingested_at desc, source_file desc) as dicom_rank
    from dicom_instances

),

-- the latest landing of anything about the image (PACS times excluded: they are not landings)
landings as (

    select
        file_name,
        max(landed_at) as last_ingested_at
    from (
        select
            file_name,
            exam_last_ingested_at as landed_at
        from exams
        union all
        select
            file_name,
            ingested_at as landed_at
        from image_files
        union all
        select
            file_name,
            ingested_at as landed_at
        from dicom_instances
    ) as landed
    group by file_name

),

-- in an incremental build every name here is a touched one: PACS names are all touched
image_names as (

    {% for source in ['exams', 'image_files', 'dicom_instances', 'pacs_images'] -%}
        select file_name from {{ source }}
        {% if not loop.last %}union distinct{% endif %}
    {% endfor %}

),

images as (

    select
        {{ dbt.hash('image_names.file_name') }} as image_key,
        image_names.file_name,
        exam_references.image_uri,
        cast(coalesce(exam_references.exam_count, 0) as integer) as exam_count,
        latest_files.file_name is not null as is_file_available,
        latest_files.source_file,
        latest_files.source_file_sha256 as object_sha256,
        -- the original in the lake's content-addressed store (medlake.lake.objects), not the delivery path
        {{ dbt.concat([
            "'objects/'", "substring(latest_files.source_file_sha256, 1, 2)", "'/'", "latest_files.source_file_sha256",
        ]) }} as object_path,
        latest_files.size_bytes,
        latest_files.media_type,
        coalesce(latest_files.is_dicom, latest_dicoms.file_name is not null) as is_dicom,
        latest_dicoms.file_name is not null as has_dicom_header,
        {% for column in dicom_columns -%}
            latest_dicoms.{{ column }},
        {% endfor -%}
        {% for column in pacs_columns -%}
            pacs_images.{{ column }},
        {% endfor -%}
        coalesce(pacs_images.is_in_pacs, false) as is_in_pacs,
        coalesce(sr_references.sr_upload_count, 0) > 0 as has_sr,
        cast(coalesce(pacs_images.prediction_count, 0) as integer) as prediction_count,
        cast(coalesce(pacs_images.prediction_run_count, 0) as integer) as prediction_run_count,
        landings.last_ingested_at
    from image_names
    left join exam_references
        on image_names.file_name = exam_references.file_name and exam_references.reference_rank = 1
    left join latest_files
        on image_names.file_name = latest_files.file_name and latest_files.file_rank = 1
    left join latest_dicoms
        on image_names.file_name = latest_dicoms.file_name and latest_dicoms.dicom_rank = 1
    left join pacs_images
        on image_names.file_name = pacs_images.file_name
    left join sr_references
        on
            coalesce(latest_dicoms.sop_instance_uid, pacs_images.sop_instance_uid)
            = sr_references.referenced_sop_instance_uid
    left join landings
        on image_names.file_name = landings.file_name

),

final as (

    {% if is_incremental() %}

        -- a marker row (file_name NULL) for a touched image no source names any more
        select
            {{ dbt.hash('touched_names.file_name') }} as image_key,
            {% for column in image_columns -%}
                images.{{ column }},
            {% endfor -%}
            images.last_ingested_at
        from touched_names
        left join images
            on touched_names.file_name = images.file_name

    {% else %}

        select * from images

    {% endif %}

)

select * from final
