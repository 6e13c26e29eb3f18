-- The label_taxonomy seed maps the spellings deliveries are known to use to their canonical
-- labels. Fails for every expected pair the seed gets wrong or lacks.
{%- set expected_pairs = [
    ('covid19', 'Covid'),
    ('covid', 'Covid'),
    ('covid-19', 'Covid'),
    ('pneumonia', 'Pneumonia'),
    ('hernia', 'Hernia'),
    ('edema', 'Edema'),
    ('mass', 'Mass'),
    ('tumor', 'Tumor'),
    ('nodule', 'Nodule'),
    ('effusion', 'Pleural Effusion'),
    ('lung opacity', 'Lung Opacity'),
] %}

with

expected as (
    {% for spelling, label in expected_pairs %}
        select
            '{{ spelling }}' as spelling,
            '{{ label }}' as label
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
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
