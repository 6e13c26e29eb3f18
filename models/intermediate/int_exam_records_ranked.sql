{#
    Every delivered exam record with the exam it belongs to and its rank among that exam's
    deliveries. Rank 1 is the record that wins: the latest publication, ties broken by the
    latest landing, then the lexically latest file, then the later position in it.
#}

with

exam_records as (

    select * from {{ ref('stg_neuralmed__exams') }}

),

-- The same file version landed twice (a batch re-written under a new run id) is one
-- delivery, not two: keep its first landing.
distinct_deliveries as (

    select
        *,
        row_number() over (
            partition by source_file, source_file_sha256, record_position
            order by ingested_at, landing_run_id
        ) as landing_rank
    from exam_records

),

identified as (

    select
        *,
        -- an exam is its id; a record without a usable id is an exam of its own, named by its lineage
        case
            when exam_id is not null
                then {{ dbt.concat(["'exam_id|'", dbt.cast('exam_id', api.Column.translate_type('string'))]) }}
            else {{ dbt.concat([
                "'lineage|'",
                'source_file',
                "'|'",
                dbt.cast('record_position', api.Column.translate_type('string')),
            ]) }}
        end as exam_natural_key
    from distinct_deliveries
    where landing_rank = 1

),

ranked as (

    select
        {{ dbt.hash('exam_natural_key') }} as exam_key,
        exam_natural_key,
        exam_id,
        exam_id_raw,
        source_name,
        source_raw,
        dataset_type,
        dataset,
        body_part_raw,
        image_uri,
        image_file_name,
        labels_state,
        label_entry_count,
        published_at,
        publication_timestamp_raw,
        extra_fields_json,
        landing_run_id,
        delivery_date,
        ingested_at,
        source_file,
        source_file_sha256,
        record_position,
        source_file_name,
        row_number() over (
            partition by exam_natural_key
            order by
                published_at desc nulls last,
                ingested_at desc,
                source_file desc,
                record_position desc
        ) as delivery_rank,
        count(*) over (partition by exam_natural_key) as delivery_count
    from identified

),

final as (

    select
        *,
        delivery_rank = 1 as is_winning_delivery
    from ranked

)

select * from final
