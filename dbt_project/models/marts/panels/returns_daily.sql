-- Close-to-close simple and log returns, overnight (open vs previous close) and intraday
-- (close vs open) returns. The previous close is the close of the previous *session*: an
-- instrument's first session, or a session after one it did not trade, has no return (null,
-- never 0).
--
-- Ratios of two sessions' prices use adjusted closes (stg_market__prices_daily: raw price times
-- the cumulative split/dividend factor F = adjusted_close / close), so a 2-for-1 split is not a
-- -50 % day and an ex-dividend day earns the dividend:
--   return_simple     adjusted_close(T) / adjusted_close(T-1) - 1
--   return_overnight  open(T) * F(T) / adjusted_close(T-1) - 1 (the open adjusted by T's factor:
--                     an action takes effect at the open of its ex-date)
--   return_intraday   close(T) / open(T) - 1 (one session's raw prices, no factor needed)
{{ config(alias="returns_daily") }}

with

bounds as (

    {{ panel_bounds(1) }}

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
        prices.instrument_id,
        prices.session_date,
        prices.market_id,
        sessions.session_idx,
        prices.open,
        prices.close,
        prices.adjusted_close

    from prices
    inner join sessions on sessions.session_date = prices.session_date
    cross join bounds
    where sessions.session_idx between bounds.from_idx and bounds.last_idx

),

with_previous as (

    select
        today.instrument_id,
        today.session_date,
        today.market_id,
        today.session_idx,
        today.open,
        today.close,
        today.adjusted_close,
        yesterday.adjusted_close as previous_adjusted_close

    from indexed as today
    left join indexed as yesterday
        on yesterday.instrument_id = today.instrument_id
        and yesterday.session_idx = today.session_idx - 1

),

final as (

    select
        with_previous.instrument_id,
        with_previous.session_date,
        with_previous.market_id,
        with_previous.adjusted_close / with_previous.previous_adjusted_close - 1 as return_simple,
        {{ safe_ln("with_previous.adjusted_close / with_previous.previous_adjusted_close") }} as return_log,
        with_previous.open * (with_previous.adjusted_close / with_previous.close)
            / with_previous.previous_adjusted_close - 1 as return_overnight,
        with_previous.close / with_previous.open - 1 as return_intraday

    from with_previous
    cross join bounds
    where with_previous.session_idx between bounds.first_idx and bounds.last_idx

)

select * from final
