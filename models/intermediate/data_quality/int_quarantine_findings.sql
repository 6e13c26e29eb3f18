{#
    One data-quality finding per quarantine row (a file, record or label that could not land),
    keyed by the quarantined item's lineage (`subject_key`). A view: fct_data_quality reads only
    the rows landed after its watermark, and that filter reaches the Parquet scan.
#}

{{ config(materialized='view') }}

{%- set string_type = dbt.type_string() %}

with

quarantined_records as (

    select * from {{ ref('stg_neuralmed__quarantined_records') }}

),

findings as (

    select
        {{ dbt.hash(dbt.concat([
            "'quarantine|'",
            'landing_run_id',
            "'|'",
            'source_file',
            "'|'",
            "coalesce(" ~ dbt.cast('record_position', string_type) ~ ", '')",
            "'|'",
            "coalesce(" ~ dbt.cast('label_position', string_type) ~ ", '')",
        ])) }} as subject_key,
        {{ dbt.concat(["'quarantined_'", 'entity']) }} as finding_type,
        'error' as severity,
        entity,
        cast(null as {{ string_type }}) as exam_key,
        cast(null as {{ string_type }}) as report_key,
        {{ dbt.concat(['reason_code', "': '", 'reason']) }} as detail,
        source_file,
        record_position,
        label_position,
        landing_run_id,
        ingested_at
    from quarantined_records

)

select * from findings
