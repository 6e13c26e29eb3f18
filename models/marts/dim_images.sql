{#
    One row per image file name known anywhere: referenced by an exam, present as a landed
    file, read as a DICOM header, uploaded to Orthanc or classified. Each source contributes
    its latest row for the name; exams reach images only by file name.

    Incremental, per image (strategy replace_partitions). An image changes when an exam that
    references (or referenced) it gets a new record, or when its file or DICOM header lands after
    the watermark. PACS tables carry no landing time and stay small (one row per image and run),
    so every image they mention is recomputed on every build. An image nothing refers to any
    more (its only exam now points elsewhere) yields a marker row without file_name and is deleted.
#}

{{ config(
    materialized='incremental',
    incremental_strategy='replace_partitions',
    unique_key='image_key',
    row_key='file_name',
    on_schema_change='fail',
    meta={'watermark_column': 'last_ingested_at'},
) }}

{%- set landed_after = incremental_watermark() %}

with

uploads as (

    select * from {{ ref('stg_pacs__uploads') }}

),

predictions as (

    select * from {{ ref('stg_pacs__predictions') }}

),

{% if is_incremental() %}

    touched_names as (

        -- every image named by any delivery of a changed exam: its old winner's image may lose the reference
        select image_file_name as file_name
        from {{ ref('int_exam_records_ranked') }}
        where exam_last_ingested_at > {{ landed_after }} and image_file_name is not null

        union distinct

        select file_name from {{ ref('stg_imaging__image_files') }}
        where ingested_at > {{ landed_after }}

        union distinct

        select file_name from {{ ref('stg_imaging__dicom_instances') }}
        where ingested_at > {{ landed_after }}

        union distinct

        select file_name from uploads
        where file_name is not null

        union distinct

        select file_name from predictions

        union distinct

        -- images an SR refers to through the SOP Instance UID of their DICOM header
        select existing_images.file_name
        from {{ this }} as existing_images
        inner join uploads
            on existing_images.sop_instance_uid = uploads.referenced_sop_instance_uid
        where uploads.upload_kind = 'sr'

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

stored_images as (

    select
        *,
        row_number() over (partition by file_name order by uploaded_at desc, run_id desc) as upload_rank
    from uploads
    where upload_kind = 'image' and upload_status in ('Success', 'AlreadyStored') and file_name is not null

),

stored_reports as (

    select
        referenced_sop_instance_uid,
        count(*) as sr_upload_count
    from uploads
    where upload_kind = 'sr' and upload_status in ('Success', 'AlreadyStored')
    group by referenced_sop_instance_uid

),

prediction_counts as (

    select
        file_name,
        count(*) as prediction_count,
        count(distinct run_id) as prediction_run_count
    from predictions
    group by file_name

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

    select file_name from exams
    union distinct
    select file_name from image_files
    union distinct
    select file_name from dicom_instances
    union distinct
    select file_name from stored_images
    union distinct
    select file_name from predictions

),

joined as (

    select
        {{ dbt.hash('image_names.file_name') }} as image_key,
        image_names.file_name,
        exam_references.image_uri,
        cast(coalesce(exam_references.exam_count, 0) as integer) as exam_count,
        latest_files.file_name is not null as is_file_available,
        latest_files.source_file,
        latest_files.size_bytes,
        latest_files.media_type,
        coalesce(latest_files.is_dicom, latest_dicoms.file_name is not null) as is_dicom,
        latest_dicoms.file_name is not null as has_dicom_header,
        latest_dicoms.patient_id,
        latest_dicoms.study_instance_uid,
        latest_dicoms.series_instance_uid,
        latest_dicoms.sop_instance_uid,
        latest_dicoms.sop_class_uid,
        latest_dicoms.modality,
        latest_dicoms.body_part_examined,
        latest_dicoms.view_position,
        latest_dicoms.study_date,
        latest_dicoms.pixel_rows,
        latest_dicoms.pixel_columns,
        latest_dicoms.bits_stored,
        latest_dicoms.photometric_interpretation,
        latest_dicoms.transfer_syntax_uid,
        stored_images.orthanc_instance_id,
        stored_images.orthanc_series_id,
        stored_images.orthanc_study_id,
        stored_images.orthanc_patient_id,
        stored_images.file_name is not null as is_in_pacs,
        coalesce(stored_reports.sr_upload_count, 0) > 0 as has_sr,
        cast(coalesce(prediction_counts.prediction_count, 0) as integer) as prediction_count,
        cast(coalesce(prediction_counts.prediction_run_count, 0) as integer) as prediction_run_count,
        landings.last_ingested_at
    from image_names
    left join exam_references
        on image_names.file_name = exam_references.file_name and exam_references.reference_rank = 1
    left join latest_files
        on image_names.file_name = latest_files.file_name and latest_files.file_rank = 1
    left join latest_dicoms
        on image_names.file_name = latest_dicoms.file_name and latest_dicoms.dicom_rank = 1
    left join stored_images
        on image_names.file_name = stored_images.file_name and stored_images.upload_rank = 1
    left join stored_reports
        on
            coalesce(latest_dicoms.sop_instance_uid, stored_images.sop_instance_uid)
            = stored_reports.referenced_sop_instance_uid
    left join prediction_counts
        on image_names.file_name = prediction_counts.file_name
    left join landings
        on image_names.file_name = landings.file_name

),

final as (

    {% if is_incremental() %}

        -- a marker row (file_name NULL) for a touched image no source names any more
        select
            {{ dbt.hash('touched_names.file_name') }} as image_key,
            joined.file_name,
            joined.image_uri,
            joined.exam_count,
            joined.is_file_available,
            joined.source_file,
            joined.size_bytes,
            joined.media_type,
            joined.is_dicom,
            joined.has_dicom_header,
            joined.patient_id,
            joined.study_instance_uid,
            joined.series_instance_uid,
            joined.sop_instance_uid,
            joined.sop_class_uid,
            joined.modality,
            joined.body_part_examined,
            joined.view_position,
            joined.study_date,
            joined.pixel_rows,
            joined.pixel_columns,
            joined.bits_stored,
            joined.photometric_interpretation,
            joined.transfer_syntax_uid,
            joined.orthanc_instance_id,
            joined.orthanc_series_id,
            joined.orthanc_study_id,
            joined.orthanc_patient_id,
            joined.is_in_pacs,
            joined.has_sr,
            joined.prediction_count,
            joined.prediction_run_count,
            joined.last_ingested_at
        from touched_names
        left join joined
            on touched_names.file_name = joined.file_name

    {% else %}

        select * from joined

    {% endif %}

)

select * from final
