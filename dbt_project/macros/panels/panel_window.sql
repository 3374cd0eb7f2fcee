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
{% macro panel_min_date() -%}
    cast('{{ var("min_date", env_var("PROMETHEUS_PANEL_MIN_DATE", "1900-01-01")) }}' as date)
{%- endmacro %}

{% macro panel_max_date() -%}
    cast('{{ var("max_date", env_var("PROMETHEUS_PANEL_MAX_DATE", "2999-12-31")) }}' as date)
{%- endmacro %}

{% macro panel_market_id() -%}
    '{{ var("market_id", env_var("PROMETHEUS_PANEL_MARKET_ID", "US_EQ")) }}'
{%- endmacro %}

{#- One row: from_idx (first session read), first_idx and last_idx (the sessions written). -#}
{% macro panel_bounds(lookback_sessions) -%}
    select
        min(session_idx) - {{ lookback_sessions }} as from_idx,
        min(session_idx) as first_idx,
        max(session_idx) as last_idx
    from {{ ref("int_sessions") }}
    where session_date between {{ panel_min_date() }} and {{ panel_max_date() }}
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
