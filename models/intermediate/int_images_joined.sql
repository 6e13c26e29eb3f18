{#
    One row per image file name known anywhere: referenced by an exam, present as a landed
    file, read as a DICOM header, uploaded to Orthanc or classified. Each source contributes
    its latest row for the name; exams reach images only by file name.
#}

with

exams as (

    select * from {{ ref('int_exams_deduplicated') }}

),

image_files as (

    select * from {{ ref('stg_imaging__image_files') }}

),

dicom_instances as (

    select * from {{ ref('stg_imaging__dicom_instances') }}

),

uploads as (

    select * from {{ ref('stg_pacs__uploads') }}

),

predictions as (

    select * from {{ ref('stg_pacs__predictions') }}

),

exam_references as (

    select
        image_file_name as file_name,
        image_uri,
        row_number() over (
            partition by image_file_name
            order by published_at desc nulls last, exam_key asc
        ) as reference_rank,
        count(*) over (partition by image_file_name) as exam_count
    from exams
    where image_file_name is not null

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

image_names as (

    select file_name from exam_references
    union
    select file_name from image_files
    union
    select file_name from dicom_instances
    union
    select file_name from stored_images
    union
    select file_name from predictions

),

joined as (

    select
        {{ dbt.hash('image_names.file_name') }} as image_key,
        image_names.file_name,
        exam_references.image_uri,
        coalesce(exam_references.exam_count, 0) as exam_count,
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
        coalesce(prediction_counts.prediction_count, 0) as prediction_count,
        coalesce(prediction_counts.prediction_run_count, 0) as prediction_run_count
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

)

select * from joined
