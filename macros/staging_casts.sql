{#
    Casts staging uses on every source. They are dispatched so the DuckDB-only syntax lives
    here and in staging, never in intermediate models or marts.
#}

{# A timestamp with time zone as a plain UTC timestamp: marts never depend on the session zone. #}
{% macro utc_timestamp(expression) -%}
    {{ return(adapter.dispatch('utc_timestamp', 'medlake')(expression)) }}
{%- endmacro %}

{% macro default__utc_timestamp(expression) -%}
    cast({{ expression }} as timestamp)
{%- endmacro %}

{% macro duckdb__utc_timestamp(expression) -%}
    cast(({{ expression }}) at time zone 'UTC' as timestamp)
{%- endmacro %}

{# The last segment of a path or URI: 'gs://bucket/a/b.dcm' -> 'b.dcm', 'exam/x.json' -> 'x.json'. #}
{% macro file_name_of(expression) -%}
    {{ return(adapter.dispatch('file_name_of', 'medlake')(expression)) }}
{%- endmacro %}

{% macro default__file_name_of(expression) -%}
    nullif(regexp_substr({{ expression }}, '[^/]+$'), '')
{%- endmacro %}

{% macro duckdb__file_name_of(expression) -%}
    nullif(regexp_extract({{ expression }}, '[^/]+$'), '')
{%- endmacro %}

{#
    A raw integer id as BIGINT: '12', '12.0', ' 12 ' -> 12; anything that is not a whole
    number ('abc', '12.5', '[12]') -> NULL, which staging flags.
#}
{% macro integer_id(expression) -%}
    case
        when regexp_full_match(trim({{ expression }}), '[+-]?[0-9]{1,18}(\.0*)?')
            then try_cast(trim({{ expression }}) as bigint)
    end
{%- endmacro %}

{#
    A raw JSON boolean (stored as text) as BOOLEAN: 'true'/'True'/'TRUE' -> true,
    'false'/'False' -> false, anything else -> NULL (flagged by staging).
#}
{% macro text_boolean(expression) -%}
    case lower(trim({{ expression }}))
        when 'true' then true
        when 'false' then false
    end
{%- endmacro %}

{#
    Epoch seconds (JSON number stored as text, e.g. '1626971804.163436') as a UTC timestamp;
    an ISO-8601 text is accepted too. Anything else -> NULL (flagged by staging).
#}
{% macro epoch_or_iso_timestamp(expression) -%}
    coalesce(
        case
            -- years 0001..9999 only: a huge number must become NULL, not a failed build
            when try_cast({{ expression }} as double) between -62135596800 and 253402300799
                then make_timestamp(cast(round(try_cast({{ expression }} as double) * 1000000) as bigint))
        end,
        {{ utc_timestamp('try_cast(' ~ expression ~ ' as timestamptz)') }}
    )
{%- endmacro %}

{# A text date ('2021-05-02' or '2021-05-02T10:00:00') as DATE, else NULL. #}
{% macro text_date(expression) -%}
    coalesce(try_cast({{ expression }} as date), cast(try_cast({{ expression }} as timestamp) as date))
{%- endmacro %}

{#
    A value that arrived as a one-element JSON list ('["hospital ABC"]') unwrapped to its
    element; a plain string stays as it is. Longer lists keep their JSON text.
#}
{% macro unwrap_single_element_list(expression) -%}
    case
        when
            json_valid({{ expression }})
            and json_type({{ expression }}) = 'ARRAY'
            and json_array_length({{ expression }}) = 1
            then {{ expression }} ->> '$[0]'
        else {{ expression }}
    end
{%- endmacro %}

{# The five lineage columns every landed raw table carries. #}
{% macro lineage_columns() -%}
    landing_run_id,
    delivery_date,
    {{ utc_timestamp('ingested_at') }} as ingested_at,
    source_file,
    source_file_sha256
{%- endmacro %}
