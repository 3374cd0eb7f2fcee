{#-
    The per-session characteristics both factor panels use, as three CTEs (panel_rows,
    characteristic_frames, characteristics) for a model that defines the CTEs prices,
    daily_returns, instruments, sessions and bounds. Characteristics at a session S (an
    instrument's row at S):
      market_cap       shares outstanding at S * raw close at S: the shares of the price row
                       of S (after S's splits), else the instrument's reference count (null
                       unless that count > 0). Raw shares times the raw traded price, so a split
                       leaves it continuous.
      momentum_12_1    adjusted close at S-21 / adjusted close at S-252 - 1 (null unless both
                       exist): a ratio of two sessions' prices, so total-return adjusted, never
                       raw (a split inside the 12 months is no momentum)
      volatility_63    sample stddev of return_log over sessions S-62..S, all 63 present (not
                       annualised: only its ordering and z-score are used)
    A frame of sessions "S-k .. S-k" holds the instrument's row of session S-k, or nothing (null)
    when it had no price then (macros/panels/rolling_aggregates.sql: windows for long runs,
    each written row's own look-back for short ones; never self-joins of all rows).

    from_offset: the first session whose characteristics the model uses is
    bounds.first_idx - from_offset. keep_rows: characteristics also has the rows before it,
    with null momentum_12_1 and volatility_63 in a short run (their other columns are set).
-#}
{% macro instrument_characteristics_ctes(from_offset=0, keep_rows=false) -%}
-- One row per instrument per session it has a price, from from_idx on.
panel_rows as (

    select
        prices.instrument_id,
        prices.session_date,
        sessions.session_idx,
        prices.adjusted_close,
        daily_returns.return_simple,
        daily_returns.return_log,
        instruments.sector,
        case
            when coalesce(prices.shares_outstanding, instruments.shares_outstanding) > 0
                then coalesce(prices.shares_outstanding, instruments.shares_outstanding) * prices.close
        end as market_cap

    from prices
    inner join sessions on sessions.session_date = prices.session_date
    left join daily_returns
        on daily_returns.instrument_id = prices.instrument_id
        and daily_returns.session_date = prices.session_date
    left join instruments on instruments.instrument_id = prices.instrument_id
    cross join bounds
    where sessions.session_idx between bounds.from_idx and bounds.last_idx

),

-- Adjusted closes 21 and 252 sessions before S and the 63-session return count and stddev at S.
characteristic_frames as (

    {{ rolling_aggregates(
        "panel_rows",
        ["instrument_id"],
        ["instrument_id", "session_date", "session_idx", "return_simple", "sector", "market_cap"],
        [
            ["adjusted_close_21_ago", "max", ["adjusted_close"], 21, 21],
            ["adjusted_close_252_ago", "max", ["adjusted_close"], 252, 252],
            ["n_returns_63", "count", ["return_log"], 62, 0],
            ["stddev_63", "stddev_samp", ["return_log"], 62, 0],
        ],
        from_offset=from_offset,
        keep_rows=keep_rows,
    ) }}

),

characteristics as (

    select
        instrument_id,
        session_date,
        session_idx,
        return_simple,
        sector,
        market_cap,
        {{ safe_divide("adjusted_close_21_ago", "adjusted_close_252_ago") }} - 1 as momentum_12_1,
        case when n_returns_63 = 63 then stddev_63 end as volatility_63

    from characteristic_frames

)
{%- endmacro %}
