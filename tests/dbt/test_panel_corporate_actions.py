"""Splits and cash dividends leave every panel where the economics leave it, on both backends.

A synthetic market (8 instruments, 2022-01-03..2023-03-31, so 12-1 momentum exists for the
last ~60 sessions) gets two twins of instruments that trade on every session, written straight
into ``prices_daily``:

* the *actions twin* (id + "A") of the first (the *base*): a 2-for-1 split, a 1-for-10 reverse
  split and a 3 % cash dividend. Its raw prices are the base's divided by the cumulative factor
  F, its shares outstanding per session follow the splits (its reference count is today's,
  after both), and its ``adjusted_close`` is computed from the raw closes by the catalogue's
  rule, adjusted(t) = adjusted(t-1) * (ratio(t) * close(t) + dividend(t)) / close(t-1), equal to
  close on the first session. The base itself is rewritten without any action (its prices in
  adjusted terms, adjusted_close = close) and with its reference count on every price row. Both
  splits lie inside the momentum look-back of some session that has momentum.
* the *uncounted twin* (id + "N") of the second: no shares on its price rows, so its market cap
  must fall back to the instruments' count, which equals the count its original gives per row.

The twins' total returns are equal, so every return, volatility, beta and momentum of a twin
must equal its original's, and so must market cap (seen through the cross-sectional SIZE
exposure) across the splits. The dividend pays cash out of the company: after it the twin's
cap is smaller, and SIZE is compared up to its ex-date only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pytest
from panel_data import build_panels, fill_market, read_panel, synthetic_frames
from sharing import backend_params, new_location

if TYPE_CHECKING:
    from conftest import PgDatabases

START, END = date(2022, 1, 3), date(2023, 3, 31)
N_INSTRUMENTS = 8
# (session index, kind, split ratio or dividend as a fraction of the previous raw close)
ACTIONS = ((200, "SPLIT", 2.0), (270, "SPLIT", 0.1), (300, "DIVIDEND", 0.03))
SELECT = "staging +volatility_daily +instrument_factors_daily +correlation_panels"
PANEL_TABLES = ("returns_daily", "volatility_daily", "factors_daily", "instrument_factors_daily", "correlation_panels")
RETURN_COLUMNS = ["return_simple", "return_log", "return_overnight", "return_intraday"]
VOL_COLUMNS = ["vol_21d", "vol_63d", "vol_ewma", "downside_vol_63d", "parkinson_vol_21d", "garman_klass_vol_21d"]
TOLERANCE = 1e-9


# ---------------------------------------------------------------- builders
@dataclass(frozen=True)
class Market:
    frames: dict[str, pl.DataFrame]
    actions: dict[date, tuple[str, float]]  # the twin's, by ex-date: (kind, split ratio or cash per share)
    base: str
    twin: str  # the base with ACTIONS
    counted: str
    uncounted: str  # the counted instrument without shares on its price rows


def _split_adjusted(rows: pl.DataFrame, ratios: np.ndarray, dividends: np.ndarray) -> np.ndarray:
    """adjusted_close by the catalogue's forward rule from raw closes, split ratios and cash dividends."""
    close = rows["close"].to_numpy()
    adjusted = np.empty_like(close)
    adjusted[0] = close[0]
    for t in range(1, len(close)):
        adjusted[t] = adjusted[t - 1] * (ratios[t] * close[t] + dividends[t]) / close[t - 1]
    return adjusted


def _with_actions(base: pl.DataFrame, twin_id: str, shares: float) -> tuple[pl.DataFrame, dict[date, tuple[str, float]]]:
    """The twin of ``base`` (no actions, adjusted = close) with ACTIONS applied: raw prices P / F."""
    economic = base["close"].to_numpy()
    n = len(economic)
    factor, split_ratio, ratios, dividends = np.ones(n), np.ones(n), np.ones(n), np.zeros(n)
    at = {index: (kind, value) for index, kind, value in ACTIONS}
    for t in range(1, n):
        factor[t], split_ratio[t] = factor[t - 1], split_ratio[t - 1]
        kind, value = at.get(t, (None, 0.0))
        if kind == "SPLIT":
            ratios[t] = value
            factor[t] *= value
            split_ratio[t] *= value
        elif kind == "DIVIDEND":
            dividends[t] = value * economic[t - 1] / factor[t - 1]  # cash per share, raw
            # raw close(t) = P(t) / F(t-1) - dividend: the price drops by the cash paid out
            factor[t] = economic[t] / (economic[t] / factor[t - 1] - dividends[t])
    factor_s, split_s = pl.Series(factor), pl.Series(split_ratio)
    twin = base.with_columns(
        instrument_id=pl.lit(twin_id),
        open=pl.col("open") / factor_s,
        high=pl.col("high") / factor_s,
        low=pl.col("low") / factor_s,
        close=pl.col("close") / factor_s,
        volume=pl.col("volume") * split_s,
        shares_outstanding=shares * split_s,
    )
    adjusted = _split_adjusted(twin, ratios, dividends)
    np.testing.assert_allclose(adjusted, economic, rtol=1e-12)  # the construction keeps total returns
    twin = twin.with_columns(adjusted_close=pl.Series(adjusted))
    sessions = base["session_date"].to_list()
    return twin, {sessions[t]: (kind, dividends[t] if kind == "DIVIDEND" else ratios[t]) for t, kind, _ in ACTIONS}


@functools.cache
def _market() -> Market:
    """The synthetic market with the two twins."""
    frames = synthetic_frames(N_INSTRUMENTS, START, END)
    instruments, prices = frames["instruments"], frames["prices_daily"]
    n_sessions = prices["session_date"].n_unique()
    full = sorted(prices.group_by("instrument_id").len().filter(pl.col("len") == n_sessions)["instrument_id"])
    assert len(full) >= 2 and n_sessions > max(index for index, _, _ in ACTIONS), (full, n_sessions)
    base, counted = full[0], full[1]
    twin, uncounted = base + "A", counted + "N"
    count = dict(instruments.select("instrument_id", "shares_outstanding").iter_rows())
    # the base without any action of its own: prices in adjusted terms, its count on every row
    base_rows = prices.filter(pl.col("instrument_id") == base).sort("session_date").with_columns(
        (pl.col(c) * pl.col("adjusted_close").fill_null(pl.col("close")) / pl.col("close")).alias(c)
        for c in ("open", "high", "low", "close")
    ).with_columns(adjusted_close=pl.col("close"), shares_outstanding=pl.lit(count[base]))
    twin_rows, actions = _with_actions(base_rows, twin, count[base])
    counted_rows = prices.filter(pl.col("instrument_id") == counted).with_columns(shares_outstanding=pl.lit(count[counted]))
    uncounted_rows = counted_rows.with_columns(instrument_id=pl.lit(uncounted), shares_outstanding=pl.lit(None, pl.Float64))
    others = prices.filter(~pl.col("instrument_id").is_in([base, counted]))
    suffix = pl.when(pl.col("instrument_id") == base).then(pl.lit("A")).otherwise(pl.lit("N"))
    twin_instruments = instruments.filter(pl.col("instrument_id").is_in([base, counted])).with_columns(
        instrument_id=pl.col("instrument_id") + suffix,
        ticker=pl.col("ticker") + suffix,
        # the reference table holds today's count: after both splits for the twin
        shares_outstanding=pl.when(pl.col("instrument_id") == base)
        .then(pl.col("shares_outstanding") * 2.0 * 0.1)
        .otherwise(pl.col("shares_outstanding")),
    )
    all_prices = pl.concat([others, base_rows, twin_rows, counted_rows, uncounted_rows], how="vertical_relaxed")
    market_frames = {
        **frames,
        "instruments": pl.concat([instruments, twin_instruments]),
        "prices_daily": all_prices.select(prices.columns).cast(prices.schema).sort("session_date", "instrument_id"),
    }
    return Market(market_frames, actions, base, twin, counted, uncounted)


@dataclass(frozen=True)
class Built:
    market: Market
    panels: dict[str, pl.DataFrame]


@pytest.fixture(scope="module", params=backend_params("panel_corporate_actions"))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_databases: PgDatabases) -> Built:
    """The market with its twins in a fresh warehouse of each backend, every panel built once."""
    location = new_location(request.param, tmp_path_factory.mktemp("corporate_actions"), pg_databases)
    market = _market()
    fill_market(location, market.frames, START, END)
    run = build_panels(location, START, END, select=SELECT)
    assert run.returncode == 0 and not run.failed, (run.failed, run.stdout[-4000:])
    return Built(market, {table: read_panel(location, table) for table in PANEL_TABLES})


def _pair(frame: pl.DataFrame, original: str, twin: str, keys: list[str]) -> pl.DataFrame:
    """The rows of ``original`` beside those of ``twin`` (suffix _twin) on ``keys``; every row has its twin."""
    left = frame.filter(pl.col("instrument_id") == original).drop("instrument_id")
    right = frame.filter(pl.col("instrument_id") == twin).drop("instrument_id")
    assert left.height > 0 and left.height == right.height, (original, left.height, twin, right.height)
    joined = left.join(right, on=keys, how="inner", suffix="_twin")
    assert joined.height == left.height, f"{twin}: rows at other keys than {original}'s"
    return joined


def _assert_twins_equal(joined: pl.DataFrame, columns: list[str]) -> None:
    """Nulls in the same places, values within TOLERANCE (relative above 1)."""
    for column in columns:
        x, y = joined[column], joined[f"{column}_twin"]
        differs = joined.filter(x.is_null() != y.is_null())
        assert differs.is_empty(), f"{column}: nulls differ\n{differs.head()}"
        error = ((x - y).abs() / x.abs().clip(lower_bound=1.0)).fill_null(0.0)
        assert error.max() <= TOLERANCE, f"{column}: error {error.max():.3g} at {joined.row(int(error.arg_max()), named=True)}"
        assert x.is_not_null().sum() > 0, f"{column}: never known"


# ---------------------------------------------------------------- tests
def test_returns_with_splits_and_dividend_equal_the_twins_total_returns(built: Built) -> None:
    # Arrange
    market = built.market
    prices = market.frames["prices_daily"].filter(pl.col("instrument_id") == market.twin).sort("session_date")
    previous = prices.with_columns(pl.col("close", "adjusted_close").shift(1).name.suffix("_previous"))

    # Act
    joined = _pair(built.panels["returns_daily"], market.base, market.twin, ["session_date", "market_id"])
    twin = built.panels["returns_daily"].filter(pl.col("instrument_id") == market.twin).join(previous, on="session_date")

    # Assert: every return of every session is the twin's; on the ex-dates the raw close-to-close
    # return is far from the total return (about -50 %, +900 %, -3 %)
    _assert_twins_equal(joined, RETURN_COLUMNS)
    for session, (kind, value) in market.actions.items():
        row = twin.filter(pl.col("session_date") == session).row(0, named=True)
        raw = row["close"] / row["close_previous"] - 1
        if kind == "SPLIT":
            true = (1 + raw) * value - 1
            assert abs(raw - (1 / value - 1)) < 0.2 / value, (session, raw)  # raw: near 1 / ratio - 1
        else:
            true = (row["close"] + value) / row["close_previous"] - 1
            assert value > 0.01 * row["close_previous"]
        assert row["return_simple"] == pytest.approx(true, rel=0, abs=TOLERANCE), (session, kind)
        assert abs(row["return_simple"] - raw) > 0.01, (session, kind)


def test_overnight_return_on_ex_dates_adjusts_the_open_by_that_sessions_factor(built: Built) -> None:
    # Arrange
    market = built.market
    prices = market.frames["prices_daily"].filter(pl.col("instrument_id") == market.twin).sort("session_date").with_columns(
        previous_adjusted=pl.col("adjusted_close").shift(1), previous_close=pl.col("close").shift(1)
    )

    # Act
    twin = built.panels["returns_daily"].filter(pl.col("instrument_id") == market.twin).join(prices, on="session_date")

    # Assert: open(T) * F(T) / adjusted(T-1) - 1, never the raw open over the raw previous close;
    # the intraday return stays raw close over raw open
    for session in market.actions:
        row = twin.filter(pl.col("session_date") == session).row(0, named=True)
        factor = row["adjusted_close"] / row["close"]
        expected = row["open"] * factor / row["previous_adjusted"] - 1
        assert row["return_overnight"] == pytest.approx(expected, rel=0, abs=TOLERANCE), session
        assert abs(row["return_overnight"] - (row["open"] / row["previous_close"] - 1)) > 0.01, session
        assert row["return_intraday"] == pytest.approx(row["close"] / row["open"] - 1, rel=0, abs=TOLERANCE)


def test_volatility_with_splits_and_dividend_equals_the_twins(built: Built) -> None:
    # Act
    joined = _pair(built.panels["volatility_daily"], built.market.base, built.market.twin, ["session_date", "market_id"])

    # Assert: close-to-close, EWMA and downside from total returns; Parkinson and Garman-Klass
    # from one session's raw ratios, which no action changes
    _assert_twins_equal(joined, VOL_COLUMNS)


def test_market_cap_across_splits_with_shares_per_session_is_continuous(built: Built) -> None:
    # Arrange: the SIZE exposure is the z-score of ln(market cap) across the session's instruments
    market = built.market
    dividend_date = next(d for d, (kind, _) in market.actions.items() if kind == "DIVIDEND")
    size = built.panels["instrument_factors_daily"].filter(pl.col("factor_id") == "SIZE")

    # Act
    joined = _pair(size, market.base, market.twin, ["session_date", "market_id", "factor_id"])

    # Assert: the twin's cap (shares after the splits x raw close) is the base's up to the
    # dividend, though the raw close moved by x0.5 and x10 and the reference count is today's;
    # after the dividend it is smaller (cash left the company)
    before = joined.filter(pl.col("session_date") < dividend_date)
    split_dates = [d for d, (kind, _) in market.actions.items() if kind == "SPLIT"]
    assert before.filter(pl.col("session_date") >= max(split_dates)).height > 10
    _assert_twins_equal(before, ["exposure_z", "beta"])
    after = joined.filter(pl.col("session_date") >= dividend_date)
    assert after.height > 0 and (after["exposure_z_twin"] < after["exposure_z"]).all()


def test_market_cap_without_shares_on_the_price_row_uses_the_instruments_count(built: Built) -> None:
    # Act
    joined = _pair(
        built.panels["instrument_factors_daily"].filter(pl.col("factor_id") == "SIZE"),
        built.market.counted, built.market.uncounted, ["session_date", "market_id", "factor_id"],
    )

    # Assert
    _assert_twins_equal(joined, ["exposure_z", "beta", "r_squared", "residual_vol"])


def test_momentum_with_splits_inside_its_look_back_equals_the_twins(built: Built) -> None:
    # Arrange
    market = built.market
    panel = built.panels["instrument_factors_daily"]

    # Act
    keys = ["session_date", "market_id", "factor_id"]
    momentum = _pair(panel.filter(pl.col("factor_id") == "MOM"), market.base, market.twin, keys)
    others = _pair(panel.filter(pl.col("factor_id").is_in(["MKT", "LOWVOL"])), market.base, market.twin, keys)

    # Assert: each split lies between T-252 and T-21 of some session T with momentum
    sessions = market.frames["prices_daily"]["session_date"].unique().sort().to_list()
    with_momentum = [sessions.index(d) for d in momentum.filter(pl.col("exposure_z").is_not_null())["session_date"]]
    for split in (d for d, (kind, _) in market.actions.items() if kind == "SPLIT"):
        assert any(sessions[t - 252] < split < sessions[t - 21] for t in with_momentum), split
    _assert_twins_equal(momentum, ["exposure_z"])  # (MOM betas need 63 sessions of MOM: not here)
    _assert_twins_equal(others, ["exposure_z", "beta", "r_squared", "residual_vol"])


def test_correlation_of_the_twins_is_one(built: Built) -> None:
    # Act
    market = built.market
    pair = built.panels["correlation_panels"].filter(
        (pl.col("panel_id") == "PAIR") & (pl.col("entity_a") == market.base) & (pl.col("entity_b") == market.twin)
    )

    # Assert
    assert pair.height > 100
    assert pair["correlation"].is_not_null().all()
    assert ((pair["correlation"] - 1).abs() <= TOLERANCE).all()
