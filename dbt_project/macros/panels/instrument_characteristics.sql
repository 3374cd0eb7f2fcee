{#-
    The per-session characteristics both factor panels use, as two CTEs (panel_rows,
    characteristics) for a model that defines the CTEs prices, daily_returns, instruments,
    sessions and bounds. Characteristics at a session S (an instrument's row at S):
      market_cap       shares_outstanding * close at S (null unless shares_outstanding > 0)
      momentum_12_1    close at S-21 / close at S-252 - 1 (null unless both closes exist)
      volatility_63    sample stddev of return_log over sessions S-62..S, all 63 present (not
                       annualised: only its ordering and z-score are used)
    A range frame "k preceding and k preceding" holds the instrument's row of session S-k, or
    nothing (null) when it had no price then; windows rather than self-joins keep the plan
    linear on both engines.
-#}
{% macro instrument_characteristics_ctes() -%}
-- One row per instrument per session it has a price, from from_idx on.
panel_rows as (

    select
        prices.instrument_id,
        prices.session_date,
        sessions.session_idx,
        prices.close,
        daily_returns.return_simple,
        daily_returns.return_log,
        instruments.sector,
        case
            when instruments.shares_outstanding > 0
                then instruments.shares_outstanding * prices.close
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

-- Characteristics at each session S. A range frame "k preceding and k preceding" holds the
-- instrument's row of session S-k, or nothing (null) when it had no price then; windows
-- rather than self-joins keep the plan linear on both engines.
characteristics as (

    select
        instrument_id,
        session_date,
        session_idx,
        return_simple,
        sector,
        market_cap,
        {{ safe_divide("max(close) over sessions_ago_21", "max(close) over sessions_ago_252") }} - 1
            as momentum_12_1,
        case
            when count(return_log) over trailing_63 = 63
                then stddev_samp(return_log) over trailing_63
        end as volatility_63

    from panel_rows

    window
        sessions_ago_21 as (
            partition by instrument_id
            order by session_idx
            range between 21 preceding and 21 preceding
        ),
        sessions_ago_252 as (
            partition by instrument_id
            order by session_idx
            range between 252 preceding and 252 preceding
        ),
        trailing_63 as (
            partition by instrument_id
            order by session_idx
            range between 62 preceding and current row
        )

)
{%- endmacro %}
