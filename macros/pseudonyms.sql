{#
    Patient ids and staff names never reach the marts as they arrived (README, "Security and failure
    behaviour"). medlake computes the keyed pseudonym of every identifier in the raw layer before a
    build (medlake/warehouse/pseudonym_table.py, source `derived.identifier_pseudonyms`); the key
    stays in Python. Portable SQL: the same on DuckDB and Spark.
#}

{#- The pseudonym of `column` (`patient` ids: pt_..., `staff` names: st_...); NULL for NULL or blank. -#}
{% macro pseudonym_of(column, kind) -%}
    (
        select max(identifier_pseudonyms.pseudonym)
        from {{ source('derived', 'identifier_pseudonyms') }} as identifier_pseudonyms
        where
            identifier_pseudonyms.identifier_kind = '{{ kind }}'
            and identifier_pseudonyms.identifier = {{ column }}
    )
{%- endmacro %}

{#- `column` when the build opted in (medlake build --include-patient-id), else NULL. -#}
{% macro opted_in_patient_id(column) -%}
    {%- if var('include_patient_id', false) -%}
        {{ column }}
    {%- else -%}
        cast(null as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}
