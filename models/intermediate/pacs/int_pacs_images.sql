{#
    One row per image file name a PACS run stored in Orthanc or classified: its latest
    successful store (Orthanc ids, SOP Instance UID) and how many predictions and runs it has.
    A view: PACS tables are small and dim_images reads them whole on every build.
#}

{{ config(materialized='view') }}

with

uploads as (

    select * from {{ ref('stg_pacs__uploads') }}

),

predictions as (

    select * from {{ ref('stg_pacs__predictions') }}

),

stored_images as (

    select
        *,
        row_number() over (partition by file_name order by uploaded_at desc, run_id desc) as upload_rank
    from uploads
    where upload_kind = 'image' and upload_status in ('Success', 'AlreadyStored') and file_name is not null

),

latest_stores as (

    select * from stored_images
    where upload_rank = 1

),

prediction_counts as (

    select
        file_name,
        count(*) as prediction_count,
        count(distinct run_id) as prediction_run_count
    from predictions
    group by file_name

),

final as (

    select
        coalesce(latest_stores.file_name, prediction_counts.file_name) as file_name,
        latest_stores.file_name is not null as is_in_pacs,
        latest_stores.sop_instance_uid,
        latest_stores.orthanc_instance_id,
        latest_stores.orthanc_series_id,
        latest_stores.orthanc_study_id,
        latest_stores.orthanc_patient_id,
        prediction_counts.prediction_count,
        prediction_counts.prediction_run_count
    from latest_stores
    full outer join prediction_counts
        on latest_stores.file_name = prediction_counts.file_name

)

select * from final
