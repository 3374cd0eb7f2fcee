{#-
    The session window of a panel run, and the look-back its rolling windows need.

    Every rolling statistic is defined over *sessions* (session_idx from int_sessions), not
    over rows: a window of 21 sessions ending at T covers session_idx T-20..T whether or not
    an instrument traded on each. A run for [min_date, max_date] therefore reads source rows
    from `first_idx - lookback` on and writes only sessions first_idx..last_idx, and its rows
    equal those of a full build exactly. Nothing after max_date is ever read.
-#}

{#-
    The window comes from environment variables set by the caller (the Dagster asset, the
    benchmarks), not from --vars: dbt re-parses the whole project whenever --vars change, but
    tracks env_var per file, so a one-session run keeps partial parsing (seconds saved per run).
    A var of the same name still wins (dbt unit tests pin their window with vars).
-#}
{% macro panel_min_date_text() -%}
    {{ return(var("min_date", env_var("PROMETHEUS_PANEL_MIN_DATE", "1900-01-01")) | string) }}
{%- endmacro %}

{% macro panel_max_date_text() -%}
    {{ return(var("max_date", env_var("PROMETHEUS_PANEL_MAX_DATE", "2999-12-31")) | string) }}
{%- endmacro %}

{% macro panel_min_date() -%}
    cast('{{ panel_min_date_text() }}' as date)
{%- endmacro %}

{% macro panel_max_date() -%}
    cast('{{ panel_max_date_text() }}' as date)
{%- endmacro %}

{% macro panel_market_id() -%}
    '{{ var("market_id", env_var("PROMETHEUS_PANEL_MARKET_ID", "US_EQ")) }}'
{%- endmacro %}

{#-
    Whether this run was given a window (any of min_date, max_date, market_id, as a var or an
    environment variable). Without one a run covers all history of US_EQ, and its data tests
    cover every row of every market (macros/tests/get_where_subquery.sql).
-#}
{% macro panel_window_is_set() -%}
    {%- for name in ("min_date", "max_date", "market_id") -%}
        {%- if var(name, none) is not none or env_var("PROMETHEUS_PANEL_" ~ name | upper, "") != "" -%}
            {{ return(true) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(false) }}
{%- endmacro %}

{#-
    One row: from_idx (first session read), first_idx and last_idx (the sessions written), and
    from_date and last_date, the dates of the first and last session read. No row when the
    window holds no session.
-#}
{% macro panel_bounds(lookback_sessions) -%}
    select
        written.first_idx - {{ lookback_sessions }} as from_idx,
        written.first_idx,
        written.last_idx,
        min(read_sessions.session_date) as from_date,
        max(read_sessions.session_date) as last_date
    from (
        select
            min(session_idx) as first_idx,
            max(session_idx) as last_idx
        from {{ ref("int_sessions") }}
        where session_date between {{ panel_min_date() }} and {{ panel_max_date() }}
    ) as written
    inner join {{ ref("int_sessions") }} as read_sessions
        on read_sessions.session_idx between written.first_idx - {{ lookback_sessions }} and written.last_idx
    group by written.first_idx, written.last_idx
{%- endmacro %}

{#-
    Filter of a model's input CTE to the sessions the run reads (from_date..last_date of the
    model's `bounds` CTE, which must come first). Cutting the rows before any join or window
    keeps a one-session run from joining all history (on PostgreSQL, the index on
    session_date finds them); rows outside are never used, so results are unchanged.
-#}
{% macro in_panel_reach(column="session_date") -%}
    {{ column }} between (select from_date from bounds) and (select last_date from bounds)
{%- endmacro %}

{#- Pre-hook of every panel: delete the market's rows of the window about to be rewritten. -#}
{% macro delete_panel_window() -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where session_date between {{ panel_min_date() }} and {{ panel_max_date() }}
      and market_id = {{ panel_market_id() }}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}

{#-
    How this run computes rolling statistics (macros/panels/rolling_aggregates.sql): "window"
    (window functions over every row read) or "point" (only at the sessions written). Both give
    the same values; they differ in cost. A run of a few sessions reads ~250 sessions of
    look-back per session it writes, and the window form computes every one of those rows
    (PostgreSQL re-aggregates each float frame from scratch: seconds per panel), while the
    point form aggregates each written row's own look-back. For long runs the window form is
    the cheap one. var rolling_form: "auto" (the default: point when the window spans at most
    14 calendar days), "point" or "window".
-#}
{% macro panel_rolling_form() -%}
    {%- set form = var("rolling_form", "auto") -%}
    {%- if form not in ("auto", "point", "window") -%}
        {{ exceptions.raise_compiler_error(
            "var rolling_form must be 'auto', 'point' or 'window', was " ~ form
        ) }}
    {%- endif -%}
    {%- if form != "auto" -%}
        {{ return(form) }}
    {%- endif -%}
    {%- set first = modules.datetime.datetime.strptime(panel_min_date_text(), "%Y-%m-%d") -%}
    {%- set last = modules.datetime.datetime.strptime(panel_max_date_text(), "%Y-%m-%d") -%}
    {{ return("point" if (last - first).days < 14 else "window") }}
{%- endmacro %}
