{#
    In a query grouped by exam and label: true when the group holds both a true and a false
    value of `is_positive` (NULLs filtered out before grouping). Shared by fct_exams and
    fct_data_quality so both call the same labels contradictory.
#}
{% macro is_asserted_both_ways(is_positive) -%}
    min(case when {{ is_positive }} then 1 else 0 end) <> max(case when {{ is_positive }} then 1 else 0 end)
{%- endmacro %}
