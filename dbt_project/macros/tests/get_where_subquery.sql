{#-
    The rows a generic data test reads: dbt wraps the tested model of every generic test in
    get_where_subquery, which applies the test's `where` config. This project's version also
    scopes the tests of a session-partitioned model (meta `session_partitioned: true`: the
    incremental panels, and the prices staging view) to the run's session window:

        session_date between min_date and max_date and market_id = <market>

    A panel run for sessions [min_date, max_date] of one market deletes and rewrites exactly
    those rows of every panel (macros/panels/panel_window.sql), so its tests check what it
    wrote - uniqueness of the grain included, since no row outside the window changed - and a
    one-session build reads one session per test instead of whole tables. The prices of the
    window are the ones that run is the first to read (earlier sessions' prices were tested by
    the runs that wrote their panels). A run without a window (`dbt test`, `dbt build` from the
    command line) tests every row of every market; a run whose window is all history tests
    all of that market's history. A test's own `where` still applies, and-ed with the window.
    Tests of other models (reference data, int_sessions) always read the whole model.

    Relationship tests filter their child rows (the `model`); the parent is read whole.
    Standard SQL: the same filter on DuckDB and PostgreSQL.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set filters = [] -%}
    {%- set where = config.get("where") -%}
    {%- if where -%}
        {%- do filters.append("(" ~ where ~ ")") -%}
    {%- endif -%}
    {#- At parse time only the ref matters (and no window may reach the parsed manifest). -#}
    {%- if execute and session_window_applies() -%}
        {%- do filters.append(
            "session_date between " ~ panel_min_date() ~ " and " ~ panel_max_date()
            ~ " and market_id = " ~ panel_market_id()
        ) -%}
    {%- endif -%}
    {%- if filters -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ filters | join(" and ") }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}

{#- Whether the test being compiled reads a session-partitioned model in a run with a window. -#}
{% macro session_window_applies() -%}
    {%- if not panel_window_is_set() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set tested = graph.nodes.get(model.get("attached_node") or "", {}) -%}
    {{ return(tested.get("config", {}).get("meta", {}).get("session_partitioned", false) is true) }}
{%- endmacro %}
