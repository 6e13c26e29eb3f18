{#
    Data tests in an incremental `medlake build` check the rows that build changed, not the
    whole lake: a 1 % delivery should not re-test 4 million labels. medlake sets
    MEDLAKE_TESTS_CHANGED_SINCE to the latest landing time the previous build had folded in;
    a test then sees only the rows landed after it:
      - tests on an incremental model: rows whose `watermark_column` (config meta) is newer;
      - tests on a landed source: rows whose `loaded_at_field` (ingested_at) is newer;
      - tests on anything else (seeds, small PACS tables): every row.
    Partitions are replaced whole, so a duplicate key always involves a changed row: a
    uniqueness test on the changed rows still sees both copies' partition. Without the
    variable (a first build, --full-refresh, plain `dbt build` / `dbt test`) tests see every row.
#}

{# The previous build's high-water landing time (text), or none when every row is to be tested. #}
{% macro tests_changed_since() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {#- read at run time only (not while parsing), so a new value never forces a re-parse -#}
    {%- set since = env_var('MEDLAKE_TESTS_CHANGED_SINCE', '') | trim -%}
    {{ return(since if since else none) }}
{%- endmacro %}

{# `<column> > <since>` for the rows a test should see, or 'true' when it should see all. #}
{% macro changed_rows_predicate(column) -%}
    {%- set since = tests_changed_since() -%}
    {%- if since is none or not column -%}
        {{ return('true') }}
    {%- endif -%}
    {{ return(column ~ " > cast('" ~ since ~ "' as " ~ dbt.type_timestamp() ~ ")") }}
{%- endmacro %}

{# The column that dates a row's last change, for the model or source a generic test is on. #}
{% macro changed_rows_column_of(test_node) -%}
    {%- set tested_id = test_node.attached_node or (test_node.depends_on.nodes | first) -%}
    {%- if tested_id in graph.nodes -%}
        {{ return(graph.nodes[tested_id].config.meta.get('watermark_column')) }}
    {%- elif tested_id in graph.sources -%}
        {{ return(graph.sources[tested_id].loaded_at_field) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{#
    Overrides dbt's get_where_subquery (the relation every generic test reads): the test's own
    `where` config as usual, plus the changed-rows predicate above.
#}
{% macro get_where_subquery(relation) -%}
    {%- set predicates = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do predicates.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- if tests_changed_since() is not none -%}
        {%- set column = changed_rows_column_of(model) -%}
        {%- if column -%}
            {%- do predicates.append(changed_rows_predicate(column)) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if predicates -%}
        {%- set filtered -%}
            {#- aliased: Spark reads `<table> where (...)` as a table alias with a column list -#}
            (select * from {{ relation }} as tested_rows where {{ predicates | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}
