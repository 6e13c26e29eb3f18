-- The label_taxonomy seed maps the spellings deliveries are known to use to their canonical
-- labels. Fails for every expected pair the seed gets wrong or lacks.
with

expected as (

    select 'covid19' as spelling, 'Covid' as label
    union all select 'covid', 'Covid'
    union all select 'covid-19', 'Covid'
    union all select 'pneumonia', 'Pneumonia'
    union all select 'hernia', 'Hernia'
    union all select 'edema', 'Edema'
    union all select 'mass', 'Mass'
    union all select 'tumor', 'Tumor'
    union all select 'nodule', 'Nodule'
    union all select 'effusion', 'Pleural Effusion'
    union all select 'lung opacity', 'Lung Opacity'

),

taxonomy as (

    select * from {{ ref('label_taxonomy') }}

)

select
    expected.spelling,
    expected.label as expected_label,
    taxonomy.label as actual_label
from expected
left join taxonomy
    on expected.spelling = taxonomy.spelling
where taxonomy.label is null or taxonomy.label <> expected.label
