{{ config(tags=['logic']) }}

-- Every cast macro staging uses gives FIXED expected answers on the awkward values deliveries
-- carry, on whichever engine runs this test (DuckDB, Spark): an engine's dispatched version is
-- held to the same answers as every other's, not to DuckDB's. On DuckDB the portable
-- `default__` versions (what another dbt adapter would run, docs/scaling.md) are held to them
-- too, which also proves that SQL valid (title_case's default needs initcap, which DuckDB lacks).
-- Results are compared as text: timestamps as 'YYYY-MM-DD HH:MM:SS[.ffffff]', NULL as NULL.
{%- set cases = [
    ('integer_id', [
        ("'12'", '12'), ("'12.0'", '12'), ("' 12 '", '12'), ("'-7'", '-7'), ("'+5'", '5'), ("'abc'", none),
        ("'12.5'", none), ("'[12]'", none), ("''", none), ("'1e5'", none), ("'1234567890123456789'", none),
        ('null', none),
    ]),
    ('file_name_of', [
        ("'gs://bucket/a/b.dcm'", 'b.dcm'), ("'exam/x.json'", 'x.json'), ("'x.json'", 'x.json'), ("'a/b/'", none),
        ('null', none),
    ]),
    ('epoch_or_iso_timestamp', [
        ("'1626971804.163436'", '2021-07-22 16:36:44.163436'), ("'1626971804'", '2021-07-22 16:36:44'),
        ("'0'", '1970-01-01 00:00:00'), ("'2021-07-22 16:36:44'", '2021-07-22 16:36:44'),
        ("'2021-07-22T16:36:44+02:00'", '2021-07-22 14:36:44'), ("'abc'", none), ("'1e20'", none), ('null', none),
    ]),
    ('date_from_yyyymmdd', [
        ("'20211201'", '2021-12-01'), ("'2021120'", none), ("'20211301'", none), ("'abcdefgh'", none),
        ('null', none),
    ]),
    ('text_date', [
        ("'2021-05-02'", '2021-05-02'), ("'2021-05-02T10:00:00'", '2021-05-02'), ("'2021'", none),
        ("'2021-05'", none), ("'abc'", none), ('null', none),
    ]),
    ('unwrap_single_element_list', [
        ("'[\"hospital ABC\"]'", 'hospital ABC'), ("'hospital ABC'", 'hospital ABC'),
        ("'[\"a\",\"b\"]'", '["a","b"]'), ('null', none),
    ]),
    ('title_case', [
        ("'pleural effusion'", 'Pleural Effusion'), ("'lung_opacity'", 'Lung Opacity'),
        ("'  COVID  19 '", 'Covid 19'), ('null', none),
    ]),
] %}
{%- set variants = [('dispatched', '')] -%}
{%- if target.type == 'duckdb' -%}
    {%- do variants.append(('default', 'default__')) -%}
{%- endif -%}
{%- set string_type = api.Column.translate_type('string') %}

with

checks as (
    {% for variant, prefix in variants %}
        {% set outer = loop %}
        {% for macro_name, values in cases if not (prefix == 'default__' and macro_name == 'title_case') %}
            {% set cast_macro = context[prefix ~ macro_name] %}
            {% set middle = loop %}
            {% for value, expected in values %}
                select
                    '{{ prefix ~ macro_name }}' as cast_macro,
                    {{ dbt.string_literal(value | replace("'", "")) }} as delivered_value,
                    {{ 'cast(null as ' ~ string_type ~ ')' if expected is none else dbt.string_literal(expected) }}
                        as expected_result,
                    cast({{ cast_macro(value) }} as {{ string_type }}) as actual_result
                {% if not (loop.last and middle.last and outer.last) %}union all{% endif %}
            {% endfor %}
        {% endfor %}
    {% endfor %}
)

select *
from checks
where
    (actual_result is null and expected_result is not null)
    or (actual_result is not null and expected_result is null)
    or actual_result <> expected_result
