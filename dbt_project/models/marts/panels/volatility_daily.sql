-- Rolling realised volatilities of each instrument, annualised with sqrt(252): close-to-close
-- (21 and 63 sessions), EWMA (lambda 0.94 over 252 sessions), downside (63 sessions) and range
-- estimators (Parkinson, Garman-Klass; 21 sessions). Definitions: volatility_daily.yml.
--
-- Every window is a range of session_idx ending at T inclusive (panel_window.sql), so it spans
-- the last N *sessions*, traded or not. A fixed-length statistic is null unless the instrument
-- has a value on every one of its N sessions: a row exists per traded session, so
-- count(x) = N over the range means no session is missing and none is null.
{{ config(alias="volatility_daily") }}

{%- set lambda_ewma = 0.94 -%}
{#- The longest window (EWMA, 252 sessions) needs the 251 sessions before first_idx. -#}
{%- set lookback = 251 -%}

with

bounds as (

    {{ panel_bounds(lookback) }}

),

returns as (

    select * from {{ ref("returns_daily") }}
    where market_id = {{ panel_market_id() }}
      and {{ in_panel_reach() }}

),

prices as (

    select * from {{ ref("stg_market__prices_daily") }}
    where market_id = {{ panel_market_id() }}
      and {{ in_panel_reach() }}

),

sessions as (

    select * from {{ ref("int_sessions") }}

),

indexed as (

    select
        returns.instrument_id,
        returns.session_date,
        returns.market_id,
        sessions.session_idx,
        returns.return_log,
        prices.open,
        prices.high,
        prices.low,
        prices.close

    from returns
    inner join sessions on sessions.session_date = returns.session_date
    left join prices
        on prices.instrument_id = returns.instrument_id
        and prices.session_date = returns.session_date
    cross join bounds
    where sessions.session_idx between bounds.from_idx and bounds.last_idx

),

terms as (

    select
        instrument_id,
        session_date,
        market_id,
        session_idx,
        return_log,
        case when return_log < 0 then return_log when return_log >= 0 then 0 end as downside_log,
        {{ safe_ln(safe_divide("high", "low")) }} as log_high_low,
        {{ safe_ln(safe_divide("close", "open")) }} as log_close_open,
        {#-
            EWMA weight lambda^(T - s) = exp(T ln lambda) * exp(-s ln lambda): the first factor
            is common to the numerator and the denominator and cancels, so both are plain window
            sums of exp(-s ln lambda). exp stays finite up to session_idx ~11,400 (ln of the
            largest double / -ln 0.94): about 45 years of sessions.
        -#}
        exp(-session_idx * ln(cast({{ lambda_ewma }} as double precision))) as ewma_weight

    from indexed

),

range_terms as (

    select
        *,
        log_high_low * log_high_low as parkinson_term,
        0.5 * log_high_low * log_high_low
            - (2 * ln(cast(2 as double precision)) - 1) * log_close_open * log_close_open as garman_klass_term,
        downside_log * downside_log as downside_square,
        ewma_weight * return_log * return_log as ewma_term,
        case when return_log is not null then ewma_weight end as ewma_weight_observed

    from terms

),

{#-
    Frames are ranges of session_idx ending at T (macros/panels/rolling_aggregates.sql: window
    functions over every row read for long runs, each written row's own look-back for short).
-#}
windowed as (

    {{ rolling_aggregates(
        "range_terms",
        ["instrument_id"],
        ["instrument_id", "session_date", "market_id", "session_idx"],
        [
            ["n_returns_21", "count", ["return_log"], 20, 0],
            ["variance_21", "var_samp", ["return_log"], 20, 0],
            ["n_returns_63", "count", ["return_log"], 62, 0],
            ["variance_63", "var_samp", ["return_log"], 62, 0],
            ["downside_sumsq_63", "sum", ["downside_square"], 62, 0],
            ["n_returns_252", "count", ["return_log"], 251, 0],
            ["ewma_weighted_sumsq", "sum", ["ewma_term"], 251, 0],
            ["ewma_weight_sum", "sum", ["ewma_weight_observed"], 251, 0],
            ["n_parkinson_21", "count", ["parkinson_term"], 20, 0],
            ["parkinson_mean_21", "avg", ["parkinson_term"], 20, 0],
            ["n_garman_klass_21", "count", ["garman_klass_term"], 20, 0],
            ["garman_klass_mean_21", "avg", ["garman_klass_term"], 20, 0],
        ],
    ) }}

),

final as (

    select
        windowed.instrument_id,
        windowed.session_date,
        windowed.market_id,
        case when windowed.n_returns_21 = 21 then sqrt(252 * windowed.variance_21) end as vol_21d,
        case when windowed.n_returns_63 = 63 then sqrt(252 * windowed.variance_63) end as vol_63d,
        case
            when windowed.n_returns_252 >= 21
                then sqrt(252 * {{ safe_divide("windowed.ewma_weighted_sumsq", "windowed.ewma_weight_sum") }})
        end as vol_ewma,
        case when windowed.n_returns_63 = 63 then sqrt(252 * windowed.downside_sumsq_63 / 63) end as downside_vol_63d,
        case
            when windowed.n_parkinson_21 = 21
                then sqrt(252 * windowed.parkinson_mean_21 / (4 * ln(cast(2 as double precision))))
        end as parkinson_vol_21d,
        case
            when windowed.n_garman_klass_21 = 21 and windowed.garman_klass_mean_21 >= 0
                then sqrt(252 * windowed.garman_klass_mean_21)
        end as garman_klass_vol_21d

    from windowed
    cross join bounds
    where windowed.session_idx between bounds.first_idx and bounds.last_idx

)

select * from final
