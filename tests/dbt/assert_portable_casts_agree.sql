{{ config(tags=['logic']) }}

-- The portable `default__` staging casts (what another dbt adapter runs, docs/scaling.md) give
-- the same answers as the DuckDB ones on the awkward values deliveries carry. Run here on DuckDB,
-- this also proves the portable SQL is valid. (title_case is left out: DuckDB has no initcap.)
{%- set cases = [
    ('integer_id', ["'12'", "'12.0'", "' 12 '", "'-7'", "'abc'", "'12.5'", "'[12]'", "''", 'null']),
    ('file_name_of', ["'gs://bucket/a/b.dcm'", "'exam/x.json'", "'x.json'", "'a/b/'", 'null']),
    ('epoch_or_iso_timestamp', ["'1626971804.163436'", "'1626971804'", "'2021-07-22 16:36:44'", "'abc'", "'1e20'", 'null']),
    ('date_from_yyyymmdd', ["'20211201'", "'2021120'", "'20211301'", "'abcdefgh'", 'null']),
    ('unwrap_single_element_list', ["'[\"hospital ABC\"]'", "'hospital ABC'", "'[\"a\",\"b\"]'", 'null']),
] %}

with

comparisons as (
    {% for macro_name, values in cases %}
        {%- set portable = context['default__' ~ macro_name] -%}
        {%- set duckdb = context['duckdb__' ~ macro_name] -%}
        {% for value in values %}
            select
                '{{ macro_name }}' as cast_macro,
                {{ dbt.string_literal(value | replace("'", "")) }} as delivered_value,
                cast({{ portable(value) }} as {{ dbt.type_string() }}) as portable_result,
                cast({{ duckdb(value) }} as {{ dbt.type_string() }}) as duckdb_result
            {% if not loop.last %}union all{% endif %}
        {% endfor %}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select *
from comparisons
where portable_result is distinct from duckdb_result
