with

images as (

    select * from {{ ref('int_images_joined') }}

),

final as (

    select
        image_key,
        file_name,
        image_uri,
        cast(exam_count as integer) as exam_count,
        is_file_available,
        source_file,
        size_bytes,
        media_type,
        is_dicom,
        has_dicom_header,
        patient_id,
        study_instance_uid,
        series_instance_uid,
        sop_instance_uid,
        sop_class_uid,
        modality,
        body_part_examined,
        view_position,
        study_date,
        pixel_rows,
        pixel_columns,
        bits_stored,
        photometric_interpretation,
        transfer_syntax_uid,
        orthanc_instance_id,
        orthanc_series_id,
        orthanc_study_id,
        orthanc_patient_id,
        is_in_pacs,
        has_sr,
        cast(prediction_count as integer) as prediction_count,
        cast(prediction_run_count as integer) as prediction_run_count
    from images

)

select * from final
