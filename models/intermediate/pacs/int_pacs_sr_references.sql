{#
    One row per SOP Instance UID that a DICOM SR stored in Orthanc refers to, with how many
    such SRs were stored. A view over the (small) PACS uploads table.
#}

{{ config(materialized='view') }}

with

uploads as (

    select * from {{ ref('stg_pacs__uploads') }}

),

final as (

    select
        referenced_sop_instance_uid,
        count(*) as sr_upload_count
    from uploads
    where upload_kind = 'sr' and upload_status in ('Success', 'AlreadyStored')
    group by referenced_sop_instance_uid

)

select * from final
