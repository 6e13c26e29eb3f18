{{ config(severity='warn') }}

-- Warns with the number of quarantined files, records and labels: they did not land, and a
-- human should look at fct_data_quality (finding_type quarantined_*) for file, position and reason.
-- In an incremental build it counts the new delivery's quarantine only (changed_rows.sql).
select
    entity,
    reason_code,
    source_file,
    record_position,
    label_position,
    reason
from {{ source('neuralmed', 'quarantine') }}
where {{ changed_rows_predicate('ingested_at') }}
