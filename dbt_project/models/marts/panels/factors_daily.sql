-- Daily factor returns of the market (var market_id): MKT, SIZE, MOM, LOWVOL and one SECTOR_<name>
-- factor per sector. Point-in-time: the return of session T sorts and weights instruments on
-- their characteristics at the previous session T-1 and applies their returns of T; nothing
-- measured at T decides membership or weights. Eligible at T: a non-null return_simple at T and
-- a non-null characteristic at T-1.
--
-- Terciles are ntile(3) over (partition by session_date order by characteristic, instrument_id):
-- bucket 1 holds the lowest values and, as ntile does, the first (n mod 3) buckets get one extra
-- instrument. A long/short factor is emitted only when both of its legs are non-empty.
--
-- Characteristics (market_cap, momentum_12_1, volatility_63) come from the macro
-- instrument_characteristics_ctes(), shared with instrument_factors_daily: market cap is the
-- session's shares outstanding times its raw close, momentum a ratio of adjusted closes, and
-- every return a total return (returns_daily), so splits and dividends move none of them.
{{ config(alias="factors_daily") }}

with

-- Momentum at T-1 reads the adjusted close of session (T-1)-252: 253 sessions before the window.
bounds as (

    {{ panel_bounds(253) }}

),

prices as (

    select * from {{ ref("stg_market__prices_daily") }}
    where market_id = {{ panel_market_id() }}
      and {{ in_panel_reach() }}

),

daily_returns as (

    select * from {{ ref("returns_daily") }}
    where market_id = {{ panel_market_id() }}
      and {{ in_panel_reach() }}

),

instruments as (

    select * from {{ ref("stg_market__instruments") }}

),

sessions as (

    select * from {{ ref("int_sessions") }}

),

-- Characteristics of the session before each written one (T-1) on.
{{ instrument_characteristics_ctes(from_offset=1) }},

-- The return of T beside the characteristics of T-1 (the previous session's row). A return at
-- T implies a price, hence a row, at T-1.
lagged as (

    select
        instrument_id,
        session_date,
        session_idx,
        return_simple,
        sector,
        max(market_cap) over previous_session as market_cap,
        max(momentum_12_1) over previous_session as momentum_12_1,
        max(volatility_63) over previous_session as volatility_63

    from characteristics

    window previous_session as (
        partition by instrument_id
        order by session_idx
        range between 1 preceding and 1 preceding
    )

),

eligible as (

    select
        lagged.instrument_id,
        lagged.session_date,
        lagged.return_simple,
        lagged.sector,
        lagged.market_cap,
        lagged.momentum_12_1,
        lagged.volatility_63

    from lagged
    cross join bounds
    where lagged.session_idx between bounds.first_idx and bounds.last_idx
      and lagged.return_simple is not null

),

-- MKT: cap-weighted over the instruments with a cap at T-1; equal-weighted over all eligible
-- instruments when none has one.
market_legs as (

    select
        session_date,
        count(market_cap) as n_capped,
        count(*) as n_all,
        {{ safe_divide("sum(market_cap * return_simple)", "sum(market_cap)") }} as capped_return,
        avg(return_simple) as equal_return

    from eligible

    group by session_date

),

market_factor as (

    select
        'MKT' as factor_id,
        session_date,
        case when n_capped > 0 then capped_return else equal_return end as factor_return,
        case when n_capped > 0 then n_capped else n_all end as n_long,
        0 as n_short

    from market_legs

),

-- Cross-sectional ranks (partitioned by session, not by instrument: a tercile is a property of
-- the session's cross-section).
size_terciles as (

    select
        session_date,
        return_simple,
        ntile(3) over (partition by session_date order by market_cap, instrument_id) as tercile

    from eligible

    where market_cap is not null

),

momentum_terciles as (

    select
        session_date,
        return_simple,
        ntile(3) over (partition by session_date order by momentum_12_1, instrument_id) as tercile

    from eligible

    where momentum_12_1 is not null

),

volatility_terciles as (

    select
        session_date,
        return_simple,
        ntile(3) over (partition by session_date order by volatility_63, instrument_id) as tercile

    from eligible

    where volatility_63 is not null

),

-- leg: 1 long, -1 short, 0 middle tercile. SIZE is small minus big, MOM winners minus losers,
-- LOWVOL low minus high volatility.
tercile_legs as (

    select
        'SIZE' as factor_id,
        session_date,
        return_simple,
        case tercile when 1 then 1 when 3 then -1 else 0 end as leg
    from size_terciles

    union all

    select
        'MOM' as factor_id,
        session_date,
        return_simple,
        case tercile when 3 then 1 when 1 then -1 else 0 end as leg
    from momentum_terciles

    union all

    select
        'LOWVOL' as factor_id,
        session_date,
        return_simple,
        case tercile when 1 then 1 when 3 then -1 else 0 end as leg
    from volatility_terciles

),

tercile_factors as (

    select
        factor_id,
        session_date,
        avg(case when leg = 1 then return_simple end)
        - avg(case when leg = -1 then return_simple end) as factor_return,
        count(case when leg = 1 then 1 end) as n_long,
        count(case when leg = -1 then 1 end) as n_short

    from tercile_legs

    group by factor_id, session_date

),

market_means as (

    select
        session_date,
        avg(return_simple) as mean_return,
        count(*) as n_all

    from eligible

    group by session_date

),

-- Sectors are grouped by their factor id, so two names that map to one id are one factor.
sector_means as (

    select
        'SECTOR_' || replace(replace(upper(sector), ' ', '_'), '&', '_') as factor_id,
        session_date,
        avg(return_simple) as mean_return,
        count(*) as n_members

    from eligible

    where sector is not null

    group by 'SECTOR_' || replace(replace(upper(sector), ' ', '_'), '&', '_'), session_date

),

sector_factors as (

    select
        sector_means.factor_id,
        sector_means.session_date,
        sector_means.mean_return - market_means.mean_return as factor_return,
        sector_means.n_members as n_long,
        market_means.n_all as n_short

    from sector_means
    inner join market_means on market_means.session_date = sector_means.session_date

),

all_factors as (

    select factor_id, session_date, factor_return, n_long, n_short from market_factor
    union all
    select factor_id, session_date, factor_return, n_long, n_short from tercile_factors
    where n_long > 0 and n_short > 0
    union all
    select factor_id, session_date, factor_return, n_long, n_short from sector_factors

),

final as (

    select
        factor_id,
        session_date,
        {{ panel_market_id() }} as market_id,
        factor_return,
        cast(n_long as integer) as n_long,
        cast(n_short as integer) as n_short

    from all_factors

    where factor_return is not null

)

select * from final
