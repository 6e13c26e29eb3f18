{#
    Casts staging uses on every source. Each engine-specific expression is dispatched
    (adapter.dispatch): `duckdb__` runs on DuckDB, `spark__` on Apache Spark (`medlake build
    --engine spark`), `default__` is portable SQL built from dbt's cross-database macros
    (dbt.safe_cast, dbt.split_part, dbt.dateadd...) for other adapters (docs/scaling.md).
    tests/dbt/assert_casts_give_expected_values.sql checks each against fixed answers on every
    engine it runs on. Intermediate models and marts use none of this syntax.
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

{#
    A cast that gives NULL instead of failing. dbt.safe_cast is that on most adapters, but on
    DuckDB it is a plain cast (dbt-duckdb does not override it), hence this dispatch.
#}
{% macro try_cast_as(expression, type) -%}
    {{ return(adapter.dispatch('try_cast_as', 'medlake')(expression, type)) }}
{%- endmacro %}

{% macro default__try_cast_as(expression, type) -%}
    {{ return(dbt.safe_cast(expression, type)) }}
{%- endmacro %}

{% macro duckdb__try_cast_as(expression, type) -%}
    try_cast({{ expression }} as {{ type }})
{%- endmacro %}

{# Spark 4 runs in ANSI mode: a plain cast (dbt-spark's safe_cast) fails the query on 'abc'. #}
{% macro spark__try_cast_as(expression, type) -%}
    try_cast({{ expression }} as {{ type }})
{%- endmacro %}

{# The last segment of a path or URI: 'gs://bucket/a/b.dcm' -> 'b.dcm', 'exam/x.json' -> 'x.json'. #}
{% macro file_name_of(expression) -%}
    {{ return(adapter.dispatch('file_name_of', 'medlake')(expression)) }}
{%- endmacro %}

{% macro default__file_name_of(expression) -%}
    nullif(reverse({{ dbt.split_part('reverse(' ~ expression ~ ')', "'/'", 1) }}), '')
{%- endmacro %}

{% macro duckdb__file_name_of(expression) -%}
    nullif(regexp_extract({{ expression }}, '[^/]+$'), '')
{%- endmacro %}

{% macro spark__file_name_of(expression) -%}
    nullif(regexp_extract({{ expression }}, '[^/]+$', 0), '')
{%- endmacro %}

{#
    A raw integer id as BIGINT: '12', '12.0', ' 12 ' -> 12; anything that is not a whole
    number ('abc', '12.5', '[12]') -> NULL, which staging flags.
#}
{% macro integer_id(expression) -%}
    {{ return(adapter.dispatch('integer_id', 'medlake')(expression)) }}
{%- endmacro %}

{# Without regular expressions: a whole number below 10^18, not written with an exponent. #}
{% macro default__integer_id(expression) -%}
    {%- set as_number = try_cast_as('trim(' ~ expression ~ ')', dbt.type_numeric()) -%}
    case
        when
            {{ as_number }} = floor({{ as_number }})
            and abs({{ as_number }}) < 1000000000000000000
            and lower({{ expression }}) not like '%e%'
            then cast({{ as_number }} as {{ dbt.type_bigint() }})
    end
{%- endmacro %}

{% macro duckdb__integer_id(expression) -%}
    case
        when regexp_full_match(trim({{ expression }}), '[+-]?[0-9]{1,18}(\.0*)?')
            then try_cast(trim({{ expression }}) as bigint)
    end
{%- endmacro %}

{# The same pattern as DuckDB's: a decimal cast would also take '1e5'. #}
{% macro spark__integer_id(expression) -%}
    case
        when trim({{ expression }}) rlike '^[+-]?[0-9]{1,18}(\\.0*)?$'
            then try_cast(regexp_replace(trim({{ expression }}), '\\.0*$', '') as bigint)
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
    {{ return(adapter.dispatch('epoch_or_iso_timestamp', 'medlake')(expression)) }}
{%- endmacro %}

{% macro default__epoch_or_iso_timestamp(expression) -%}
    {%- set seconds = try_cast_as(expression, type_double()) -%}
    {#- whole seconds, then the microseconds: some engines take only 32-bit interval counts -#}
    {%- set whole_seconds = dbt.dateadd(
        'second',
        'cast(floor(' ~ seconds ~ ') as ' ~ dbt.type_bigint() ~ ')',
        "cast('1970-01-01 00:00:00' as " ~ dbt.type_timestamp() ~ ")",
    ) -%}
    coalesce(
        case
            when {{ seconds }} between -62135596800 and 253402300799
                then {{ dbt.dateadd(
                    'microsecond',
                    'cast(round((' ~ seconds ~ ' - floor(' ~ seconds ~ ')) * 1000000) as ' ~ dbt.type_int() ~ ')',
                    whole_seconds,
                ) }}
        end,
        {{ utc_timestamp(try_cast_as(expression, 'timestamp with time zone')) }}
    )
{%- endmacro %}

{% macro duckdb__epoch_or_iso_timestamp(expression) -%}
    coalesce(
        case
            -- years 0001..9999 only: a huge number must become NULL, not a failed build
            when try_cast({{ expression }} as double) between -62135596800 and 253402300799
                then make_timestamp(cast(round(try_cast({{ expression }} as double) * 1000000) as bigint))
        end,
        {{ utc_timestamp('try_cast(' ~ expression ~ ' as timestamptz)') }}
    )
{%- endmacro %}

{#
    Whole microseconds from the 8-byte double, as on DuckDB; an ISO text is read with its offset
    (timestamp_ltz) and turned into the session zone's (UTC's) wall time.
#}
{% macro spark__epoch_or_iso_timestamp(expression) -%}
    coalesce(
        case
            when try_cast({{ expression }} as double) between -62135596800 and 253402300799
                then cast(timestamp_micros(cast(round(try_cast({{ expression }} as double) * 1000000) as bigint))
                    as {{ dbt.type_timestamp() }})
        end,
        cast(try_cast({{ expression }} as timestamp_ltz) as {{ dbt.type_timestamp() }})
    )
{%- endmacro %}

{# A text date ('2021-05-02' or '2021-05-02T10:00:00') as DATE, else NULL. #}
{% macro text_date(expression) -%}
    {{ return(adapter.dispatch('text_date', 'medlake')(expression)) }}
{%- endmacro %}

{% macro default__text_date(expression) -%}
    coalesce(
        {{ try_cast_as(expression, 'date') }},
        cast({{ try_cast_as(expression, dbt.type_timestamp()) }} as date)
    )
{%- endmacro %}

{# Spark also reads '2021' and '2021-05' as dates (the 1st): a delivered date needs all three parts. #}
{% macro spark__text_date(expression) -%}
    case
        when {{ expression }} rlike '^\\s*[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([T ]|\\s*$)'
            then {{ default__text_date(expression) }}
    end
{%- endmacro %}

{# A DICOM DA value ('20211201') as DATE, else NULL. #}
{% macro date_from_yyyymmdd(expression) -%}
    {{ return(adapter.dispatch('date_from_yyyymmdd', 'medlake')(expression)) }}
{%- endmacro %}

{% macro default__date_from_yyyymmdd(expression) -%}
    case
        when length({{ expression }}) = 8
            then {{ try_cast_as(dbt.concat([
                'substr(' ~ expression ~ ', 1, 4)', "'-'",
                'substr(' ~ expression ~ ', 5, 2)', "'-'",
                'substr(' ~ expression ~ ', 7, 2)',
            ]), 'date') }}
    end
{%- endmacro %}

{% macro duckdb__date_from_yyyymmdd(expression) -%}
    cast(try_strptime({{ expression }}, '%Y%m%d') as date)
{%- endmacro %}

{#
    A value that arrived as a one-element JSON list ('["hospital ABC"]') unwrapped to its
    element; a plain string stays as it is. Longer lists keep their JSON text.
#}
{% macro unwrap_single_element_list(expression) -%}
    {{ return(adapter.dispatch('unwrap_single_element_list', 'medlake')(expression)) }}
{%- endmacro %}

{# Without JSON functions: a `["..."]` text holding one plain string. #}
{% macro default__unwrap_single_element_list(expression) -%}
    case
        when {{ expression }} like '["%"]' and {{ expression }} not like '%","%'
            then substr({{ expression }}, 3, length({{ expression }}) - 4)
        else {{ expression }}
    end
{%- endmacro %}

{% macro duckdb__unwrap_single_element_list(expression) -%}
    case
        when
            json_valid({{ expression }})
            and json_type({{ expression }}) = 'ARRAY'
            and json_array_length({{ expression }}) = 1
            then {{ expression }} ->> '$[0]'
        else {{ expression }}
    end
{%- endmacro %}

{# json_array_length is NULL for text that is not a JSON array. #}
{% macro spark__unwrap_single_element_list(expression) -%}
    case
        when json_array_length({{ expression }}) = 1
            then get_json_object({{ expression }}, '$[0]')
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

{# An 8-byte float type: dbt.type_float() is 4-byte on DuckDB and Spark (`float`). #}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'medlake')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    {{ return('double precision') }}
{%- endmacro %}

{% macro spark__type_double() -%}
    {{ return('double') }}
{%- endmacro %}

{% macro duckdb__type_double() -%}
    {{ return('double') }}
{%- endmacro %}
