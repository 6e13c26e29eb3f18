{#
    The lookup form of a raw spelling: trimmed, lower case.
    Taxonomy seeds list spellings in this form, so matching is case-insensitive.
#}
{% macro normalise_spelling(expression) -%}
    lower(trim({{ expression }}))
{%- endmacro %}
