{#
    One row per exam: the winning delivery of each exam, with its body part canonicalised
    through the body_part_taxonomy seed (case-insensitive; unknown spellings Title-cased and
    flagged, never dropped).
    A view: the winners are a filter on int_exam_records_ranked, and every reader selects
    only the exams it needs, so nothing is copied.
#}

{{ config(materialized='view') }}

with

winning_records as (

    select * from {{ ref('int_exam_records_ranked') }}
    where is_winning_delivery

),

body_part_taxonomy as (

    select * from {{ ref('body_part_taxonomy') }}

),

canonicalised as (

    select
        winning_records.exam_key,
        winning_records.exam_id,
        winning_records.exam_id_raw,
        winning_records.source_name,
        winning_records.dataset,
        winning_records.dataset_type,
        winning_records.body_part_raw,
        coalesce(
            body_part_taxonomy.body_part,
            {{ title_case('winning_records.body_part_raw') }}
        ) as body_part,
        winning_records.image_uri,
        winning_records.image_file_name,
        winning_records.labels_state,
        winning_records.label_entry_count,
        winning_records.published_at,
        winning_records.publication_timestamp_raw,
        winning_records.extra_fields_json,
        winning_records.delivery_count,
        winning_records.exam_last_ingested_at,
        winning_records.landing_run_id,
        winning_records.delivery_date,
        winning_records.ingested_at,
        winning_records.source_file,
        winning_records.source_file_sha256,
        winning_records.record_position,
        winning_records.exam_id_raw is null as is_missing_exam_id,
        winning_records.exam_id_raw is not null and winning_records.exam_id is null as is_invalid_exam_id,
        winning_records.body_part_raw is null as is_missing_body_part,
        winning_records.body_part_raw is not null
        and body_part_taxonomy.spelling is null as is_unmapped_body_part,
        winning_records.published_at is null as is_missing_published_at
    from winning_records
    left join body_part_taxonomy
        on {{ normalise_spelling('winning_records.body_part_raw') }} = body_part_taxonomy.spelling

)

select * from canonicalised
