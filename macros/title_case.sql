{#
    Title-case a string expression word by word ("pleural  effusion" -> "Pleural Effusion"),
    treating underscores as spaces and runs of white space as one. Dispatched: DuckDB has no
    initcap, most warehouses do.
#}
{% macro title_case(expression) -%}
    {{ return(adapter.dispatch('title_case', 'medlake')(expression)) }}
{%- endmacro %}

{% macro default__title_case(expression) -%}
    initcap(replace(trim({{ expression }}), '_', ' '))
{%- endmacro %}

{% macro duckdb__title_case(expression) -%}
    array_to_string(
        list_transform(
            string_split(regexp_replace(lower(trim(replace({{ expression }}, '_', ' '))), '\s+', ' ', 'g'), ' '),
            lambda word: upper(left(word, 1)) || substr(word, 2)
        ),
        ' '
    )
{%- endmacro %}

{# initcap alone keeps double spaces ('a  b' -> 'A  B'); DuckDB's collapses them. #}
{% macro spark__title_case(expression) -%}
    initcap(regexp_replace(trim(replace({{ expression }}, '_', ' ')), '\\s+', ' '))
{%- endmacro %}
