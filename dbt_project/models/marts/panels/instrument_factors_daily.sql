-- Per instrument, session and style factor (MKT, SIZE, MOM, LOWVOL): the rolling 63-session
-- univariate regression of the instrument's return_simple on the factor's return (beta,
-- r_squared, annualised residual_vol; null unless all 63 sessions of the window pair a return
-- with a factor return) and exposure_z, the cross-sectional z-score at T of
--   MKT     the MKT beta itself
--   SIZE    ln(market_cap at T) (shares outstanding at T x raw close at T)
--   MOM     momentum_12_1 at T (adjusted close at T-21 / adjusted close at T-252 - 1)
--   LOWVOL  volatility_63 at T (sample stddev of return_log over sessions T-62..T, all present)
-- over the instruments with a non-null value (sample stddev; null when it is 0 or undefined).
-- Characteristics are defined as in factors_daily, which uses them one session later.
--
-- Point-in-time: factor returns of sessions <= T come from factors_daily (earlier sessions are
-- already in the table, the window's were written by this run just before), prices and returns
-- of sessions <= T from staging and returns_daily.
{{ config(alias="instrument_factors_daily") }}

with

-- Momentum at T reads the adjusted close of session T-252; betas and volatility reach back 62 sessions.
bounds as (

    {{ panel_bounds(252) }}

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

factors as (

    select * from {{ ref("factors_daily") }}
    where market_id = {{ panel_market_id() }}
      and {{ in_panel_reach() }}

),

instruments as (

    select * from {{ ref("stg_market__instruments") }}

),

sessions as (

    select * from {{ ref("int_sessions") }}

),

style_factors as (

    select 'MKT' as factor_id
    union all
    select 'SIZE' as factor_id
    union all
    select 'MOM' as factor_id
    union all
    select 'LOWVOL' as factor_id

),

-- Characteristics at the written sessions; the 62 sessions before them are kept for their
-- returns (the regressions' look-back), their characteristics unused.
{{ instrument_characteristics_ctes(keep_rows=true) }},

-- One row per instrument row (a session it has a price) and style factor, with the factor's
-- return of that session (null where factors_daily has none).
paired as (

    select
        characteristics.instrument_id,
        characteristics.session_date,
        characteristics.session_idx,
        style_factors.factor_id,
        characteristics.return_simple,
        factors.factor_return,
        characteristics.market_cap,
        characteristics.momentum_12_1,
        characteristics.volatility_63

    from characteristics
    cross join style_factors
    left join factors
        on factors.factor_id = style_factors.factor_id
        and factors.session_date = characteristics.session_date
    cross join bounds
    where characteristics.session_idx >= bounds.first_idx - 62

),

-- regr_* skip pairs with a null side; regr_count is the number of paired sessions.
regressions as (

    {{ rolling_aggregates(
        "paired",
        ["instrument_id", "factor_id"],
        ["instrument_id", "session_date", "session_idx", "factor_id", "market_cap", "momentum_12_1", "volatility_63"],
        [
            ["n_pairs", "regr_count", ["return_simple", "factor_return"], 62, 0],
            ["slope", "regr_slope", ["return_simple", "factor_return"], 62, 0],
            ["r2", "regr_r2", ["return_simple", "factor_return"], 62, 0],
            ["syy", "regr_syy", ["return_simple", "factor_return"], 62, 0],
        ],
    ) }}

),

-- residual_vol = sqrt((1 - r2) * var_samp(y) * (n - 1) / (n - 2) * 252), where
-- var_samp(y) * (n - 1) over the pairs is regr_syy. greatest() guards a rounded r2 above 1.
betas as (

    select
        regressions.instrument_id,
        regressions.session_date,
        regressions.factor_id,
        regressions.market_cap,
        regressions.momentum_12_1,
        regressions.volatility_63,
        case when regressions.n_pairs = 63 then regressions.slope end as beta,
        case when regressions.n_pairs = 63 then regressions.r2 end as r_squared,
        case
            when regressions.n_pairs = 63
                then sqrt(greatest(1 - regressions.r2, 0) * regressions.syy / (regressions.n_pairs - 2) * 252)
        end as residual_vol

    from regressions
    cross join bounds
    where regressions.session_idx between bounds.first_idx and bounds.last_idx

),

exposures as (

    select
        instrument_id,
        session_date,
        factor_id,
        beta,
        r_squared,
        residual_vol,
        case factor_id
            when 'MKT' then beta
            when 'SIZE' then {{ safe_ln("market_cap") }}
            when 'MOM' then momentum_12_1
            when 'LOWVOL' then volatility_63
        end as exposure

    from betas

),

-- Cross-sectional z-scores: partitioned by session and factor, not by instrument.
scored as (

    select
        instrument_id,
        session_date,
        factor_id,
        beta,
        r_squared,
        residual_vol,
        {{ safe_divide(
            "exposure - avg(exposure) over cross_section",
            "stddev_samp(exposure) over cross_section"
        ) }} as exposure_z

    from exposures

    window cross_section as (partition by session_date, factor_id)

),

final as (

    select
        instrument_id,
        session_date,
        factor_id,
        {{ panel_market_id() }} as market_id,
        beta,
        exposure_z,
        r_squared,
        residual_vol

    from scored

    where beta is not null or exposure_z is not null

)

select * from final
