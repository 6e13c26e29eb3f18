{#
    The image file names an incremental build of dim_images recomputes: every name an exam record,
    an image file or a DICOM header landed after dim_images' watermark mentions (an exam's every
    delivery: its old winner's image may lose the reference), and every name PACS ever touched
    (PACS tables carry no landing time and stay small), including images an SR refers to through
    the SOP Instance UID of their DICOM header.

    Ephemeral, compiled into dim_images as it builds: the watermark is dim_images' own
    (changes_watermark, config meta changes_of), read just before dim_images replaces those names.
#}

{{ config(materialized='ephemeral', meta={'changes_of': 'dim_images'}) }}

{%- set landed_after = changes_watermark() %}

with

uploads as (

    select * from {{ ref('stg_pacs__uploads') }}

),

landed_exam_images as (

    select image_file_name as file_name
    from {{ ref('int_exam_records_ranked') }}
    where exam_last_ingested_at > {{ landed_after }} and image_file_name is not null

),

landed_files as (

    select file_name from {{ ref('stg_imaging__image_files') }}
    where ingested_at > {{ landed_after }}

),

landed_dicoms as (

    select file_name from {{ ref('stg_imaging__dicom_instances') }}
    where ingested_at > {{ landed_after }}

),

pacs_images as (

    select file_name from {{ ref('int_pacs_images') }}

),

-- images an SR refers to through the SOP Instance UID of (any landing of) their DICOM header
sr_referenced_images as (

    select dicom_instances.file_name
    from {{ ref('stg_imaging__dicom_instances') }} as dicom_instances
    inner join uploads
        on dicom_instances.sop_instance_uid = uploads.referenced_sop_instance_uid
    where uploads.upload_kind = 'sr' and dicom_instances.file_name is not null

),

changed_names as (

    select file_name from landed_exam_images
    union distinct
    select file_name from landed_files
    union distinct
    select file_name from landed_dicoms
    union distinct
    -- every image PACS ever touched (attempted uploads included)
    select file_name from uploads
    where file_name is not null
    union distinct
    select file_name from pacs_images
    union distinct
    select file_name from sr_referenced_images

)

select * from changed_names
