-- Rolling correlations of daily log returns over the window of `window_sessions` sessions
-- ending at T (session_idx T-L..T, L = window_sessions - 1; 63 sessions by default):
--
--   PAIR        corr(r_a, r_b) for the pairs of a bounded universe (the K instruments with the
--               most shares_outstanding, K = var correlation_universe_size), written only with
--               a full window of paired returns. Cost O(K^2 x sessions), never all pairs.
--   MARKET_AVG  the average correlation by the variance-ratio identity over I_T, the
--               instruments with a log return on every session of the window:
--                 rho_T = (Var(S) - sum s_i^2) / ((sum s_i)^2 - sum s_i^2),
--               S_t = sum_{i in I_T} r_it, s_i^2 = sample variance of r_i (the equal weights
--               1/N of P_t = S_t / N cancel). I_T is a balanced panel, so rho_T is exactly
--               the s_i s_j-weighted mean of the pairwise correlations of I_T.
--   SECTOR_AVG  the same within each sector.
--
-- Tractability. S_t depends on T through I_T, so sum_t S_t^2 is no rolling sum of a single
-- series, and summing I_T's returns for every (T, t) would cost instruments x sessions x
-- window. Instead S_t = G_t - D_t^T: G_t sums the returns of *all* the group's instruments at t
-- (one row per group and session), D_t^T those of the instruments that have returns in the
-- window but not on all of it ("partial": listing, delisting, around a gap). Only returns
-- within L sessions of an end of a run of consecutive returns are ever partial, so D has at
-- most ~L^2 rows per run end. The (T, t) terms are G_t spread over its L + 1 windows
-- (groups x sessions x window rows, independent of the number of instruments) and the partial
-- returns, summed per (T, t) and then per T: a union and group-bys, no join of large sets
-- (PostgreSQL misestimates the filtered CTEs; an earlier join-based form got a nested loop
-- that re-ran a whole branch per row, minutes at 25 instruments).
--
-- Rolling windows are ranges of session_idx (macros/panels/panel_window.sql), so the windows
-- below order by session_idx and partition by the series they roll (an instrument, a pair),
-- not by instrument_id/session_date as STYLE rule 10 says for per-instrument panels.
{{ config(alias="correlation_panels") }}

{%- set window_sessions = var("correlation_window_sessions", 63) | int -%}
{%- set universe_size = var("correlation_universe_size", 20) | int -%}
{%- if window_sessions < 3 -%}
    {{ exceptions.raise_compiler_error(
        "correlation_panels: var correlation_window_sessions must be an integer >= 3, was "
        ~ var("correlation_window_sessions", 63)
    ) }}
{%- endif -%}
{%- if universe_size < 2 -%}
    {{ exceptions.raise_compiler_error(
        "correlation_panels: var correlation_universe_size must be an integer >= 2, was "
        ~ var("correlation_universe_size", 20)
    ) }}
{%- endif -%}
{%- set lookback = window_sessions - 1 %}

with

bounds as (

    {{ panel_bounds(lookback) }}

),

returns as (

    select * from {{ ref("returns_daily") }}
    where market_id = {{ panel_market_id() }}
      and {{ in_panel_reach() }}

),

instruments as (

    select * from {{ ref("stg_market__instruments") }}
    where market_id = {{ panel_market_id() }}

),

sessions as (

    select * from {{ ref("int_sessions") }}

),

generated as (

    {{ dbt.generate_series(window_sessions) }}

),

-- 0..L: the windows T = t + window_offset that contain session t.
offsets as (

    select cast(generated_number as integer) - 1 as window_offset
    from generated

),

-- Finite log returns from the first session a written window needs, with the sector.
observed as (

    select
        returns.instrument_id,
        instruments.sector,
        sessions.session_idx,
        returns.return_log

    from returns
    inner join sessions on sessions.session_date = returns.session_date
    left join instruments on instruments.instrument_id = returns.instrument_id
    cross join bounds
    where sessions.session_idx between bounds.from_idx and bounds.last_idx
      and returns.return_log is not null
      and {{ is_finite("returns.return_log") }}

),

-- ------------------------------------------------------------------ PAIR

-- Static membership (shares_outstanding is a reference attribute): no look-ahead.
size_ranked as (

    select
        instrument_id,
        row_number() over (order by shares_outstanding desc, instrument_id) as size_rank

    from instruments
    where shares_outstanding is not null

),

universe_returns as (

    select
        observed.instrument_id,
        observed.session_idx,
        observed.return_log

    from observed
    inner join size_ranked on size_ranked.instrument_id = observed.instrument_id
    where size_ranked.size_rank <= {{ universe_size }}

),

pair_returns as (

    select
        leg_a.instrument_id as entity_a,
        leg_b.instrument_id as entity_b,
        leg_a.session_idx,
        leg_a.return_log as return_a,
        leg_b.return_log as return_b

    from universe_returns as leg_a
    inner join universe_returns as leg_b
        on leg_b.session_idx = leg_a.session_idx
        and leg_a.instrument_id < leg_b.instrument_id

),

pair_windows as (

    select
        entity_a,
        entity_b,
        session_idx,
        count(*) over pair_window as n_obs,
        covar_samp(return_a, return_b) over pair_window as covariance,
        var_samp(return_a) over pair_window as variance_a,
        var_samp(return_b) over pair_window as variance_b

    from pair_returns
    window pair_window as (
        partition by entity_a, entity_b
        order by session_idx
        range between {{ lookback }} preceding and current row
    )

),

pair_panel as (

    select
        pair_windows.session_idx,
        'PAIR' as panel_id,
        pair_windows.entity_a,
        pair_windows.entity_b,
        {{ safe_divide("pair_windows.covariance", "sqrt(pair_windows.variance_a * pair_windows.variance_b)") }}
            as correlation,
        pair_windows.n_obs

    from pair_windows
    cross join bounds
    where pair_windows.n_obs = {{ window_sessions }}
      and pair_windows.session_idx between bounds.first_idx and bounds.last_idx

),

-- ------------------------------------------------------ MARKET_AVG, SECTOR_AVG

-- Rolling variance of each instrument; n_sessions = window_sessions means it is in I_T.
instrument_windows as (

    select
        instrument_id,
        sector,
        session_idx,
        count(*) over instrument_window as n_sessions,
        var_samp(return_log) over instrument_window as return_variance

    from observed
    window instrument_window as (
        partition by instrument_id
        order by session_idx
        range between {{ lookback }} preceding and current row
    )

),

full_members as (

    select
        instrument_windows.sector,
        instrument_windows.session_idx,
        instrument_windows.return_variance

    from instrument_windows
    cross join bounds
    where instrument_windows.n_sessions = {{ window_sessions }}
      and instrument_windows.session_idx between bounds.first_idx and bounds.last_idx

),

-- Runs of consecutive returns (gaps and islands): run_first_idx..run_last_idx.
islands as (

    select
        instrument_id,
        sector,
        session_idx,
        return_log,
        session_idx - row_number() over (partition by instrument_id order by session_idx) as island_key

    from observed

),

runs as (

    select
        sector,
        session_idx,
        return_log,
        min(session_idx) over (partition by instrument_id, island_key) as run_first_idx,
        max(session_idx) over (partition by instrument_id, island_key) as run_last_idx

    from islands

),

-- A return at t lies in the windows ending at T = t..t+L; its instrument is partial at T when
-- T < run_first_idx + L (its run starts inside the window) or T > run_last_idx (it ended).
-- So only returns within L sessions of an end of their run, and only ends that a written
-- window can see, are expanded.
run_edges as (

    select runs.*

    from runs
    cross join bounds
    where (
        runs.session_idx < runs.run_first_idx + {{ lookback }}
        and runs.run_first_idx + {{ lookback }} > bounds.first_idx
    )
    or (
        runs.session_idx > runs.run_last_idx - {{ lookback }}
        and runs.run_last_idx < bounds.last_idx
    )

),

partial_returns as (

    select
        run_edges.sector,
        run_edges.session_idx,
        run_edges.session_idx + offsets.window_offset as window_last_idx,
        run_edges.return_log

    from run_edges
    cross join offsets
    cross join bounds
    where run_edges.session_idx + offsets.window_offset between bounds.first_idx and bounds.last_idx
      and (
          run_edges.session_idx + offsets.window_offset < run_edges.run_first_idx + {{ lookback }}
          or run_edges.session_idx + offsets.window_offset > run_edges.run_last_idx
      )

),

-- G_t per sector (the null sector holds instruments without one).
sector_sessions as (

    select
        sector,
        session_idx,
        sum(return_log) as return_log

    from observed
    group by sector, session_idx

),

-- G_t spread over the windows that contain t.
spread_returns as (

    select
        sector_sessions.sector,
        sector_sessions.session_idx,
        sector_sessions.session_idx + offsets.window_offset as window_last_idx,
        sector_sessions.return_log

    from sector_sessions
    cross join offsets
    cross join bounds
    where sector_sessions.session_idx + offsets.window_offset between bounds.first_idx and bounds.last_idx

),

-- The terms of S_t for each (T, t): + every return at t, - those of partial instruments. One
-- term set per sector, summed again for the market.
signed_terms as (

    select
        sector,
        window_last_idx,
        session_idx,
        return_log as amount

    from spread_returns

    union all

    select
        sector,
        window_last_idx,
        session_idx,
        -return_log as amount

    from partial_returns

),

sector_portfolio as (

    select
        sector,
        window_last_idx,
        session_idx,
        sum(amount) as portfolio_return

    from signed_terms
    group by sector, window_last_idx, session_idx

),

-- S_t for each group: a sector's is its sector term; the market's sums every sector term
-- (instruments without a sector are the null-sector term, in the market only).
group_portfolio as (

    select
        'MARKET_AVG' as panel_id,
        'ALL' as entity,
        window_last_idx,
        sum(portfolio_return) as portfolio_return

    from sector_portfolio
    group by window_last_idx, session_idx

    union all

    select
        'SECTOR_AVG' as panel_id,
        sector as entity,
        window_last_idx,
        portfolio_return

    from sector_portfolio
    where sector is not null

),

-- Per group and T: the instruments of I_T and the portfolio's moments, from one union.
group_terms as (

    select
        'MARKET_AVG' as panel_id,
        'ALL' as entity,
        session_idx,
        1 as n_instruments,
        sqrt(return_variance) as sigma,
        return_variance as variance,
        0 as portfolio_return,
        0 as portfolio_square

    from full_members

    union all

    select
        'SECTOR_AVG' as panel_id,
        sector as entity,
        session_idx,
        1 as n_instruments,
        sqrt(return_variance) as sigma,
        return_variance as variance,
        0 as portfolio_return,
        0 as portfolio_square

    from full_members
    where sector is not null

    union all

    select
        panel_id,
        entity,
        window_last_idx as session_idx,
        0 as n_instruments,
        0 as sigma,
        0 as variance,
        portfolio_return,
        portfolio_return * portfolio_return as portfolio_square

    from group_portfolio

),

group_moments as (

    select
        panel_id,
        entity,
        session_idx,
        sum(n_instruments) as n_instruments,
        sum(sigma) as sigma_sum,
        sum(variance) as variance_sum,
        (
            sum(portfolio_square)
            - sum(portfolio_return) * sum(portfolio_return) / {{ window_sessions }}
        ) / {{ lookback }} as portfolio_variance

    from group_terms
    group by panel_id, entity, session_idx
    having sum(n_instruments) >= 2

),

average_panel as (

    select
        session_idx,
        panel_id,
        entity as entity_a,
        entity as entity_b,
        {{ safe_divide(
            "portfolio_variance - variance_sum",
            "sigma_sum * sigma_sum - variance_sum"
        ) }} as correlation,
        n_instruments as n_obs

    from group_moments

),

-- ------------------------------------------------------------------ output

panels as (

    select * from pair_panel
    union all
    select * from average_panel

),

final as (

    select
        sessions.session_date,
        {{ panel_market_id() }} as market_id,
        panels.panel_id,
        panels.entity_a,
        panels.entity_b,
        cast({{ window_sessions }} as integer) as window_sessions,
        cast(panels.correlation as double precision) as correlation,
        cast(panels.n_obs as integer) as n_obs

    from panels
    inner join sessions on sessions.session_idx = panels.session_idx

)

select * from final
