{#
    Fails for every row where the boolean SQL `expression` is not true (false or NULL).
    Optional `where` narrows the rows checked, e.g. where="is_file_available".
    (dbt_utils.expression_is_true, re-written here because dbt deps cannot reach the hub.)
#}
{% test expression_is_true(model, expression, column_name=none) %}
    {%- set checked = column_name ~ ' ' ~ expression if column_name else expression %}
    select *
    from {{ model }}
    where not coalesce({{ checked }}, false)
{% endtest %}
