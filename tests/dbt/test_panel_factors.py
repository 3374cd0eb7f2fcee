"""factors_daily and instrument_factors_daily equal an independent numpy reference, on both backends,
and no row at or before a session T changes when every price after T changes.

One synthetic market (30 instruments, six of them IPOs; 2022-01-03..2023-06-30, so 12-1
momentum exists for the last ~120 sessions and MOM betas for the last ~60) is built with
``dbt build`` over the whole range, once per backend (the module fixture ``built``: both tests
start from that build, and the look-ahead test then changes its prices and builds it again).
The reference tables are perturbed first so that the null paths run: trading gaps (SYN0002
misses five sessions, SYN0003 one), an instrument without shares_outstanding (no cap: out of
MKT and SIZE), one without a sector, and a sector whose name holds '&'. The reference below is
computed from those frames in numpy (dense session x instrument matrices), never from the SQL.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from panel_data import MARKET_ID, build_panels, fill_market, read_panel, synthetic_frames
from sharing import backend_params, new_location

from prometheus_lib.storage.catalog import ColumnType, get_table
from prometheus_lib.storage.factory import open_warehouse

if TYPE_CHECKING:
    from conftest import PgDatabases

START, END = date(2022, 1, 3), date(2023, 6, 30)
N_INSTRUMENTS = 30
# The models under test and what they read; all of staging, because dbt's (eager) indirect
# selection also runs the staging relationship tests that point at selected views.
SELECT = "staging +instrument_factors_daily"
TABLES = ("factors_daily", "instrument_factors_daily")
STYLE_FACTORS = ("MKT", "SIZE", "MOM", "LOWVOL")
TOLERANCE = 1e-9
BETA_SESSIONS, VOL_SESSIONS, MOM_SKIP, MOM_LOOKBACK = 63, 63, 21, 252
ANNUAL = 252


# ---------------------------------------------------------------- builders
@functools.cache
def _frames() -> dict[str, pl.DataFrame]:
    """The synthetic market with gaps, a missing cap, a missing sector and an '&' sector name."""
    frames = synthetic_frames(N_INSTRUMENTS, START, END)
    prices = frames["prices_daily"]
    s = prices["session_date"].unique().sort().to_list()
    gaps = [("SYN0002", d) for d in s[100:105]] + [("SYN0003", s[280])]
    dropped = pl.DataFrame(gaps, schema={"instrument_id": pl.String, "session_date": pl.Date}, orient="row")
    instruments = frames["instruments"].with_columns(
        shares_outstanding=pl.when(pl.col("instrument_id") == "SYN0030")
        .then(None)
        .otherwise(pl.col("shares_outstanding")),
        sector=pl.when(pl.col("instrument_id") == "SYN0029").then(None)
        .when(pl.col("sector") == "Materials").then(pl.lit("Metals & Mining"))
        .otherwise(pl.col("sector")),
    )
    return {
        **frames,
        "instruments": instruments,
        # SYN0030 has no count on its price rows either (those would win over the reference's)
        "prices_daily": prices.join(dropped, on=["instrument_id", "session_date"], how="anti").with_columns(
            shares_outstanding=pl.when(pl.col("instrument_id") == "SYN0030")
            .then(None)
            .otherwise(pl.col("shares_outstanding")),
        ),
    }


def _build(location: dict[str, str]) -> None:
    run = build_panels(location, START, END, select=SELECT)
    assert run.returncode == 0 and not run.failed, (run.failed, run.stdout[-4000:])


# ---------------------------------------------------------------- reference (numpy only)
def _ntile3(n: int) -> np.ndarray:
    """ntile(3) of n ordered rows: buckets 1..3, the first n mod 3 buckets one row larger."""
    q, extra = divmod(n, 3)
    return np.repeat([1, 2, 3], [q + (b < extra) for b in range(3)])


def _sector_factor_id(sector: str) -> str:
    return "SECTOR_" + sector.upper().replace(" ", "_").replace("&", "_")


@functools.cache
def _reference() -> dict[str, pl.DataFrame]:
    frames = _frames()
    prices = frames["prices_daily"].filter(pl.col("session_date") <= END).with_columns(
        adjusted_close=pl.col("adjusted_close").fill_null(pl.col("close"))
    )
    sessions = prices["session_date"].unique().sort().to_list()
    ids = sorted(prices["instrument_id"].unique().to_list())

    def dense(column: str) -> np.ndarray:
        wide = (
            pl.DataFrame({"session_date": sessions})
            .join(prices.pivot(on="instrument_id", index="session_date", values=column), on="session_date", how="left")
            .sort("session_date")
        )
        return np.column_stack([wide[i].cast(pl.Float64).fill_null(np.nan).to_numpy() for i in ids])

    # raw close (market cap), adjusted close (returns, momentum), shares on the price rows
    close, adjusted, row_shares = dense("close"), dense("adjusted_close"), dense("shares_outstanding")
    reference = {r["instrument_id"]: r for r in frames["instruments"].to_dicts()}
    shares = np.array([reference[i]["shares_outstanding"] or np.nan for i in ids], dtype=float)
    shares = np.where(np.isfinite(row_shares), row_shares, shares)  # the row's count, else the reference's
    sectors = [reference[i]["sector"] for i in ids]
    n_sessions, n_ids = close.shape

    ret = np.full(close.shape, np.nan)
    ret[1:] = adjusted[1:] / adjusted[:-1] - 1
    log_ret = np.full(close.shape, np.nan)
    log_ret[1:] = np.log(adjusted[1:] / adjusted[:-1])
    with np.errstate(invalid="ignore"):
        cap = np.where(shares > 0, shares * close, np.nan)
    momentum = np.full(close.shape, np.nan)
    momentum[MOM_LOOKBACK:] = adjusted[MOM_LOOKBACK - MOM_SKIP:-MOM_SKIP] / adjusted[:-MOM_LOOKBACK] - 1
    momentum[~np.isfinite(close)] = np.nan  # a characteristic of session S lives on the row of S
    volatility = np.full(close.shape, np.nan)
    windows = sliding_window_view(log_ret, VOL_SESSIONS, axis=0)  # (sessions - 62, ids, 63)
    volatility[VOL_SESSIONS - 1:] = np.std(windows, axis=-1, ddof=1)  # NaN unless all 63 are known

    # ---- factors_daily: characteristics of t-1, returns of t
    factor_rows = []
    for t in range(1, n_sessions):
        day = sessions[t]
        eligible = np.isfinite(ret[t])
        if not eligible.any():
            continue
        capped = eligible & np.isfinite(cap[t - 1])
        if capped.any():
            w = cap[t - 1, capped]
            factor_rows.append(("MKT", day, float(np.sum(w * ret[t, capped]) / np.sum(w)), int(capped.sum()), 0))
        else:
            factor_rows.append(("MKT", day, float(np.mean(ret[t, eligible])), int(eligible.sum()), 0))
        # SIZE small minus big, MOM winners minus losers, LOWVOL low minus high volatility
        for factor_id, characteristic, long_bucket in (("SIZE", cap, 1), ("MOM", momentum, 3), ("LOWVOL", volatility, 1)):
            members = np.flatnonzero(eligible & np.isfinite(characteristic[t - 1]))
            order = members[np.lexsort((members, characteristic[t - 1, members]))]  # by value, then id
            buckets = _ntile3(len(order))
            long, short = order[buckets == long_bucket], order[buckets == 4 - long_bucket]
            if len(long) and len(short):
                spread = float(np.mean(ret[t, long]) - np.mean(ret[t, short]))
                factor_rows.append((factor_id, day, spread, len(long), len(short)))
        market_mean = np.mean(ret[t, eligible])
        by_sector: dict[str, list[int]] = {}
        for j in np.flatnonzero(eligible):
            if sectors[j] is not None:
                by_sector.setdefault(_sector_factor_id(sectors[j]), []).append(j)
        for factor_id, members in by_sector.items():
            spread = float(np.mean(ret[t, members]) - market_mean)
            factor_rows.append((factor_id, day, spread, len(members), int(eligible.sum())))
    factors = pl.DataFrame(
        factor_rows, schema=["factor_id", "session_date", "factor_return", "n_long", "n_short"], orient="row"
    ).with_columns(market_id=pl.lit(MARKET_ID))

    # ---- instrument_factors_daily
    factor_return = {(f, d): r for f, d, r in factors.select("factor_id", "session_date", "factor_return").iter_rows()}
    factor_series = {f: np.array([factor_return.get((f, d), np.nan) for d in sessions]) for f in STYLE_FACTORS}
    y = sliding_window_view(ret, BETA_SESSIONS, axis=0)  # (sessions - 62, ids, 63)
    frames_out = []
    for f in STYLE_FACTORS:
        x = sliding_window_view(factor_series[f], BETA_SESSIONS)[:, None, :]  # (sessions - 62, 1, 63)
        paired = (np.isfinite(y) & np.isfinite(x)).all(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            dx, dy = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
            sxx, syy, sxy = (dx * dx).sum(-1), (dy * dy).sum(-1), (dx * dy).sum(-1)
            slope = np.where(sxx != 0, sxy / sxx, np.nan)
            r2 = np.where(sxx == 0, np.nan, np.where(syy == 0, 1.0, sxy * sxy / (sxx * syy)))
            resid = np.sqrt(np.maximum(1 - r2, 0) * syy / (BETA_SESSIONS - 2) * ANNUAL)
        beta, r_squared, residual_vol = (np.full(close.shape, np.nan) for _ in range(3))
        for out, values in ((beta, slope), (r_squared, r2), (residual_vol, resid)):
            out[BETA_SESSIONS - 1:] = np.where(paired, values, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            exposure = {"MKT": beta, "SIZE": np.log(cap), "MOM": momentum, "LOWVOL": volatility}[f]
        z = np.full(close.shape, np.nan)
        for t in range(n_sessions):
            known = np.isfinite(exposure[t])
            if known.sum() >= 2:
                v = exposure[t, known]
                sd = np.std(v, ddof=1)
                if sd > 0:
                    z[t, known] = (v - v.mean()) / sd
        rows = [
            (ids[j], sessions[t], f, beta[t, j], z[t, j], r_squared[t, j], residual_vol[t, j])
            for t in range(n_sessions)
            for j in range(n_ids)
            if np.isfinite(close[t, j]) and (np.isfinite(beta[t, j]) or np.isfinite(z[t, j]))
        ]
        columns = ["instrument_id", "session_date", "factor_id", "beta", "exposure_z", "r_squared", "residual_vol"]
        frames_out.append(pl.DataFrame(rows, schema=columns, orient="row"))
    instrument_factors = pl.concat(frames_out).with_columns(market_id=pl.lit(MARKET_ID))

    out = {}
    for table, frame in (("factors_daily", factors), ("instrument_factors_daily", instrument_factors)):
        t = get_table(table)
        out[table] = frame.select(
            [pl.col(c).cast(t.column(c).polars_type) for c in t.column_names]
        ).with_columns(pl.col(pl.Float64).fill_nan(None)).sort(t.primary_key)
    return out


# ---------------------------------------------------------------- comparison
def _assert_tables_match(table: str, actual: pl.DataFrame, expected: pl.DataFrame, tolerance: float) -> None:
    """Same keys, same nulls, every double within ``tolerance`` (relative above 1, else absolute)."""
    t = get_table(table)
    keys = list(t.primary_key)
    missing = expected.join(actual, on=keys, how="anti")
    extra = actual.join(expected, on=keys, how="anti")
    assert missing.is_empty() and extra.is_empty(), (
        f"{table}: missing rows\n{missing.head()}\nextra rows\n{extra.head()}"
    )
    joined = expected.join(actual, on=keys, how="inner", suffix="_actual")
    for c in t.columns:
        if c.name in keys:
            continue
        x, y = joined[c.name], joined[f"{c.name}_actual"]
        nulls_differ = joined.filter(x.is_null() != y.is_null())
        assert nulls_differ.is_empty(), f"{table}.{c.name}: nulls differ\n{nulls_differ.head()}"
        if c.type is not ColumnType.DOUBLE:
            assert (x == y).fill_null(True).all(), f"{table}.{c.name} differs"
            continue
        error = ((x - y).abs() / x.abs().clip(lower_bound=1.0)).fill_null(0.0)
        worst = int(error.arg_max())
        assert error.max() <= tolerance, (
            f"{table}.{c.name}: error {error.max():.3g} at {joined.row(worst, named=True)}"
        )


def _read(location: dict[str, str]) -> dict[str, pl.DataFrame]:
    return {table: read_panel(location, table) for table in TABLES}


@dataclass(frozen=True)
class Built:
    location: dict[str, str]
    panels: dict[str, pl.DataFrame]  # both tables as the first build left them


@pytest.fixture(scope="module", params=backend_params("panel_factors"))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_databases: PgDatabases) -> Built:
    """The perturbed market in a fresh warehouse of each backend, built once and read back."""
    location = new_location(request.param, tmp_path_factory.mktemp("factors"), pg_databases)
    fill_market(location, _frames(), START, END)
    _build(location)
    return Built(location, _read(location))


# ---------------------------------------------------------------- tests
def test_build_with_synthetic_market_matches_numpy_reference(built: Built) -> None:
    # Arrange
    expected = _reference()

    # Act: the full build of the fixture
    actual = built.panels

    # Assert: every factor (incl. SECTOR_METALS___MINING) and exposure is exercised, and matches
    factor_ids = set(actual["factors_daily"]["factor_id"])
    assert {*STYLE_FACTORS, "SECTOR_METALS___MINING", "SECTOR_HEALTH_CARE"} <= factor_ids
    betas = actual["instrument_factors_daily"].filter(pl.col("beta").is_not_null())
    assert set(betas["factor_id"]) == set(STYLE_FACTORS)
    for table in TABLES:
        _assert_tables_match(table, actual[table], expected[table], TOLERANCE)


def test_build_after_prices_change_past_t_leaves_rows_up_to_t_unchanged(built: Built) -> None:
    # Arrange: the fixture's full build, then every price strictly after T scaled by 1.5
    before = built.panels
    cut = date(2023, 3, 15)  # after MOM and all betas have started
    with open_warehouse(**built.location) as wh:
        wh.execute(
            "update historical.prices_daily set open = open * 1.5, high = high * 1.5, low = low * 1.5, "
            f"close = close * 1.5, adjusted_close = adjusted_close * 1.5 where session_date > {wh.placeholder}",
            [cut],
        )

    # Act
    _build(built.location)
    after = _read(built.location)

    # Assert: up to T identical; after T the change shows (the MKT return of the next session)
    for table in TABLES:
        up_to_cut = [frame[table].filter(pl.col("session_date") <= cut) for frame in (before, after)]
        assert up_to_cut[0].height > 0
        _assert_tables_match(table, up_to_cut[1], up_to_cut[0], 1e-12)
    changed = after["factors_daily"].join(
        before["factors_daily"], on=["factor_id", "session_date", "market_id"], suffix="_before"
    ).filter((pl.col("session_date") > cut) & (pl.col("factor_return") != pl.col("factor_return_before")))
    assert changed.height > 0
