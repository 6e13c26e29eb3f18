{#
    Fails when two rows share the same values in all of `combination_of_columns` (the grain).
    (dbt_utils.unique_combination_of_columns, re-written because dbt deps cannot reach the hub.)
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set column_list = combination_of_columns | join(', ') %}
    select
        {{ column_list }},
        count(*) as row_count
    from {{ model }}
    group by {{ column_list }}
    having count(*) > 1
{% endtest %}
