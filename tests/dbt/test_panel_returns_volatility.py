"""returns_daily and volatility_daily equal an independent numpy reference, on both backends.

One synthetic market (20 instruments, four of them IPOs; 2022-01-03..2023-06-30, so the
252-session EWMA window fills) is built once per backend with ``dbt build`` over the whole range.
The prices are perturbed first so that every null path is exercised: trading gaps (a session
missing for one instrument), a missing high and a missing open, and a block of inconsistent bars
(high = low = open) that drives the Garman-Klass mean negative. The reference below is computed
from that prices frame in numpy only (dense session x instrument matrices), never from the SQL.
Returns are ratios of adjusted closes (total returns; for the overnight return the open times
its session's factor adjusted_close / close), the range estimators ratios of one session's raw
prices (tests/dbt/test_panel_corporate_actions.py plants splits and a dividend).
"""

from __future__ import annotations

import fcntl
import functools
import math
import os
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from panel_data import build_panels, fill_market, read_panel, synthetic_frames

from prometheus_lib.storage.factory import open_warehouse

START, END = date(2022, 1, 3), date(2023, 6, 30)
N_INSTRUMENTS = 20
# The panel models under test and what they read; all of staging, because dbt's (eager)
# indirect selection also runs the staging relationship tests that point at selected views.
SELECT = "staging +volatility_daily"
KEYS = ["instrument_id", "session_date", "market_id"]
RETURN_COLUMNS = ["return_simple", "return_log", "return_overnight", "return_intraday"]
VOL_COLUMNS = ["vol_21d", "vol_63d", "vol_ewma", "downside_vol_63d", "parkinson_vol_21d", "garman_klass_vol_21d"]
TOLERANCE = 1e-9
ANNUAL = 252
LAMBDA = 0.94
EWMA_SESSIONS, EWMA_MIN_RETURNS = 252, 21


# ---------------------------------------------------------------- builders
@functools.cache
def _perturbed_prices() -> pl.DataFrame:
    """The synthetic prices with gaps, missing open/high and inconsistent bars planted."""
    prices = synthetic_frames(N_INSTRUMENTS, START, END)["prices_daily"]
    sessions = prices["session_date"].unique().sort()
    s = sessions.to_list()
    # Gaps: five sessions of SYN0001 (mid-history) and one of SYN0002 (inside a 21-window).
    gaps = [("SYN0001", d) for d in s[100:105]] + [("SYN0002", s[200])]
    dropped = pl.DataFrame(gaps, schema={"instrument_id": pl.String, "session_date": pl.Date}, orient="row")
    prices = prices.join(dropped, on=["instrument_id", "session_date"], how="anti")

    def at(instrument: str, first: int, last: int) -> pl.Expr:
        return (pl.col("instrument_id") == instrument) & pl.col("session_date").is_between(s[first], s[last])

    return prices.with_columns(
        high=pl.when(at("SYN0003", 150, 150)).then(None).otherwise(pl.col("high")),
        open=pl.when(at("SYN0005", 250, 250)).then(None).otherwise(pl.col("open")),
    ).with_columns(
        # high = low = open with close elsewhere: Garman-Klass terms go negative.
        high=pl.when(at("SYN0006", 300, 330)).then(pl.col("open")).otherwise(pl.col("high")),
        low=pl.when(at("SYN0006", 300, 330)).then(pl.col("open")).otherwise(pl.col("low")),
    ).sort("session_date", "instrument_id")


def _with_adjusted(prices: pl.DataFrame) -> pl.DataFrame:
    """adjusted_close where the source gives none is close (no corporate action)."""
    return prices.with_columns(adjusted_close=pl.col("adjusted_close").fill_null(pl.col("close")))


def _dense(prices: pl.DataFrame, column: str, sessions: list[date], instruments: list[str]) -> np.ndarray:
    """A session x instrument matrix of ``column``, NaN where there is no row or no value."""
    wide = (
        pl.DataFrame({"session_date": sessions})
        .join(prices.pivot(on="instrument_id", index="session_date", values=column), on="session_date", how="left")
        .sort("session_date")
    )
    return np.column_stack([wide[i].cast(pl.Float64).fill_null(np.nan).to_numpy() for i in instruments])


def _full_window(x: np.ndarray, n: int, statistic) -> np.ndarray:
    """``statistic`` over the last ``n`` sessions ending at each session, NaN unless all n are known."""
    out = np.full(x.shape, np.nan)
    windows = sliding_window_view(x, n, axis=0)  # [S - n + 1, I, n]
    full = np.isfinite(windows).all(axis=-1)
    with np.errstate(invalid="ignore"):
        out[n - 1 :] = np.where(full, statistic(windows), np.nan)
    return out


def _ewma_explicit(r: np.ndarray) -> np.ndarray:
    """EWMA volatility with explicit weights lambda^(T-s) over the last 252 sessions."""
    out = np.full(r.shape, np.nan)
    for t in range(r.shape[0]):
        lo = max(0, t - EWMA_SESSIONS + 1)
        x = r[lo : t + 1]
        known = np.isfinite(x)
        w = LAMBDA ** (t - np.arange(lo, t + 1, dtype=float))[:, None] * known
        num = np.where(known, x * x, 0.0) * w
        with np.errstate(invalid="ignore"):
            vol = np.sqrt(ANNUAL * num.sum(axis=0) / w.sum(axis=0))
        out[t] = np.where(known.sum(axis=0) >= EWMA_MIN_RETURNS, vol, np.nan)
    return out


def _ewma_recursive(r: np.ndarray) -> np.ndarray:
    """The same EWMA by recursion: N_t = lambda N_(t-1) + r_t^2 - lambda^252 r_(t-252)^2 (and D_t)."""
    known = np.isfinite(r).astype(float)
    sq = np.where(known > 0, r * r, 0.0)
    decay = LAMBDA**EWMA_SESSIONS
    num, den, count = np.zeros(r.shape[1]), np.zeros(r.shape[1]), np.zeros(r.shape[1])
    out = np.full(r.shape, np.nan)
    for t in range(r.shape[0]):
        num, den, count = LAMBDA * num + sq[t], LAMBDA * den + known[t], count + known[t]
        if t >= EWMA_SESSIONS:
            num, den, count = num - decay * sq[t - EWMA_SESSIONS], den - decay * known[t - EWMA_SESSIONS], count - known[t - EWMA_SESSIONS]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[t] = np.where(count >= EWMA_MIN_RETURNS, np.sqrt(ANNUAL * num / den), np.nan)
    return out


def _reference(prices: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """returns_daily and volatility_daily of ``prices``, by their definitions, in numpy."""
    sessions = prices["session_date"].unique().sort().to_list()
    instruments = prices["instrument_id"].unique().sort().to_list()
    o, h, l, c = (_dense(prices, f, sessions, instruments) for f in ("open", "high", "low", "close"))
    a = _dense(_with_adjusted(prices), "adjusted_close", sessions, instruments)
    present = np.isfinite(c)
    previous = np.vstack([np.full((1, a.shape[1]), np.nan), a[:-1]])  # the previous session's adjusted close
    with np.errstate(invalid="ignore"):
        r = np.log(a / previous)
        log_hl, log_co = np.log(h / l), np.log(c / o)
    gk_mean = _full_window(0.5 * log_hl**2 - (2 * math.log(2) - 1) * log_co**2, 21, lambda w: w.mean(axis=-1))
    columns = {
        "return_simple": a / previous - 1,
        "return_log": r,
        "return_overnight": o * (a / c) / previous - 1,
        "return_intraday": c / o - 1,
        "vol_21d": _full_window(r, 21, lambda w: w.std(axis=-1, ddof=1)) * math.sqrt(ANNUAL),
        "vol_63d": _full_window(r, 63, lambda w: w.std(axis=-1, ddof=1)) * math.sqrt(ANNUAL),
        "vol_ewma": _ewma_explicit(r),
        "downside_vol_63d": _full_window(r, 63, lambda w: np.sqrt(ANNUAL * (np.minimum(w, 0.0) ** 2).sum(axis=-1) / 63)),
        "parkinson_vol_21d": np.sqrt(ANNUAL / (4 * math.log(2)) * _full_window(log_hl**2, 21, lambda w: w.mean(axis=-1))),
        "garman_klass_vol_21d": np.sqrt(ANNUAL * np.where(gk_mean >= 0, gk_mean, np.nan)),
    }
    t_idx, i_idx = np.nonzero(present)
    frame = pl.DataFrame({
        "instrument_id": [instruments[i] for i in i_idx],
        "session_date": [sessions[t] for t in t_idx],
        "market_id": "US_EQ",
        **{name: values[t_idx, i_idx] for name, values in columns.items()},
    }).with_columns(pl.col(RETURN_COLUMNS + VOL_COLUMNS).fill_nan(None)).sort("instrument_id", "session_date")
    return frame.select(KEYS + RETURN_COLUMNS), frame.select(KEYS + VOL_COLUMNS)


def _assert_matches(actual: pl.DataFrame, expected: pl.DataFrame, columns: list[str], relative: bool) -> None:
    """Same keys in the same order, nulls in the same places, values within TOLERANCE."""
    assert actual.columns == expected.columns
    assert actual.select(KEYS).equals(expected.select(KEYS)), "row keys differ from the reference"
    for column in columns:
        a, e = actual[column], expected[column]
        assert a.is_nan().sum() == 0, f"{column}: NaN stored instead of null"
        null_differs = a.is_null() != e.is_null()
        assert not null_differs.any(), (
            f"{column}: null in different places, first rows:\n{actual.filter(null_differs).select(KEYS + [column]).head(5)}\n"
            f"reference:\n{expected.filter(null_differs).select(KEYS + [column]).head(5)}"
        )
        known = a.is_not_null().to_numpy()
        av, ev = a.to_numpy()[known], e.to_numpy()[known]
        bound = TOLERANCE * np.maximum(1.0, np.abs(ev)) if relative else TOLERANCE
        worst = int(np.argmax(np.abs(av - ev) - bound)) if len(av) else 0
        assert np.all(np.abs(av - ev) <= bound), f"{column}: {av[worst]!r} vs reference {ev[worst]!r}"


def _analyze(location: dict[str, str], table: str) -> None:
    """Give PostgreSQL's planner statistics of a freshly loaded table.

    Without them (autovacuum analyses a minute later at best) it estimates one row per scan and
    joins the panels' inputs by nested loops: 10-20 s per model here instead of < 1 s.
    """
    with psycopg.connect(location["postgres_url"], autocommit=True) as con:
        con.execute(f"analyze {table}")


def _build(location: dict[str, str], work: Path) -> dict[str, pl.DataFrame]:
    """Fill a fresh warehouse with the perturbed market, dbt build it, read both panels back."""
    prices = _perturbed_prices()
    fill_market(location, {**synthetic_frames(N_INSTRUMENTS, START, END), "prices_daily": prices}, START, END)
    if location["backend"] == "postgres":
        _analyze(location, "historical.prices_daily")
    run = build_panels(location, START, END, select=SELECT, work=work)
    assert run.returncode == 0 and not run.failed, f"{run.failed}\n{run.stdout[-4000:]}"
    assert {"returns_daily", "volatility_daily", "volatility_daily_full_window_edge"} <= run.results.keys()
    return {table: read_panel(location, table) for table in ("returns_daily", "volatility_daily")}


@pytest.fixture
def panels(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """returns_daily and volatility_daily of the perturbed market, built once per backend.

    The first test of a backend builds (in its fresh ``warehouse_location``) and leaves the
    panels as parquet in the run's temp root, which all xdist workers share; the others wait
    on the lock and read them, so each backend is built once per pytest run.
    """
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    files = {table: root / f"panel_returns_volatility_{backend}_{table}.parquet" for table in ("returns_daily", "volatility_daily")}
    with open(root / f"panel_returns_volatility_{backend}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(f.exists() for f in files.values()):
            built = _build(request.getfixturevalue("warehouse_location"), tmp_path_factory.mktemp("dbt"))
            for table, frame in built.items():
                frame.write_parquet(files[table])
    return {"prices": _perturbed_prices(), **{table: pl.read_parquet(f) for table, f in files.items()}}


# ---------------------------------------------------------------- tests
def test_build_with_synthetic_market_returns_match_reference(panels: dict[str, pl.DataFrame]) -> None:
    # Arrange
    expected, _ = _reference(panels["prices"])

    # Act
    actual = panels["returns_daily"]

    # Assert
    _assert_matches(actual, expected, RETURN_COLUMNS, relative=False)


def test_build_with_synthetic_market_volatility_matches_reference(panels: dict[str, pl.DataFrame]) -> None:
    # Arrange
    _, expected = _reference(panels["prices"])

    # Act
    actual = panels["volatility_daily"]

    # Assert
    _assert_matches(actual, expected, VOL_COLUMNS, relative=True)
    # Every null path was taken and every statistic is somewhere known.
    assert actual.filter(pl.col("vol_ewma").is_not_null() & pl.col("vol_63d").is_null()).height > 0
    assert actual.filter((pl.col("instrument_id") == "SYN0006") & pl.col("garman_klass_vol_21d").is_null()
                         & pl.col("parkinson_vol_21d").is_not_null()).height > 0
    assert all(n > 0 for n in actual.select(pl.col(VOL_COLUMNS).is_not_null().sum()).row(0))


def test_build_with_ipo_instruments_first_sessions_are_null(panels: dict[str, pl.DataFrame]) -> None:
    # Arrange
    first = panels["prices"].group_by("instrument_id").agg(pl.col("session_date").min().alias("first_session"))
    ipos = first.filter(pl.col("first_session") > START)["instrument_id"].to_list()

    # Act
    returns = panels["returns_daily"].join(first, on="instrument_id")
    vols = panels["volatility_daily"].join(first, on="instrument_id").with_columns(
        n=pl.int_range(pl.len()).over("instrument_id")
    )

    # Assert
    assert len(ipos) >= 2
    first_rows = returns.filter(pl.col("session_date") == pl.col("first_session"))
    n_listed = first.height  # N_INSTRUMENTS and any that replace delisted ones
    assert first_rows.height == n_listed
    assert first_rows["return_simple"].null_count() == n_listed
    assert first_rows["return_log"].null_count() == n_listed
    ipo_vols = vols.filter(pl.col("instrument_id").is_in(ipos))
    # An IPO's first return is on its 2nd session: 21 returns first on its 22nd (n = 21).
    assert ipo_vols.filter(pl.col("n") <= 20)["vol_21d"].null_count() == ipo_vols.filter(pl.col("n") <= 20).height
    assert ipo_vols.filter(pl.col("n") == 21)["vol_21d"].null_count() == 0
    assert ipo_vols.filter(pl.col("n") <= 20)["vol_ewma"].null_count() == ipo_vols.filter(pl.col("n") <= 20).height
    assert ipo_vols.filter(pl.col("n") == 21)["vol_ewma"].null_count() == 0
    assert ipo_vols.filter(pl.col("n") <= 62)["vol_63d"].null_count() == ipo_vols.filter(pl.col("n") <= 62).height


def test_vol_ewma_with_window_sum_identity_matches_recursive_ewma(panels: dict[str, pl.DataFrame]) -> None:
    # Arrange
    prices = panels["prices"]
    sessions = prices["session_date"].unique().sort().to_list()
    instruments = prices["instrument_id"].unique().sort().to_list()
    close = _dense(_with_adjusted(prices), "adjusted_close", sessions, instruments)
    r = np.log(close / np.vstack([np.full((1, close.shape[1]), np.nan), close[:-1]]))
    recursive = np.where(np.isfinite(close), _ewma_recursive(r), np.nan)  # rows that exist

    # Act
    actual = _dense(panels["volatility_daily"], "vol_ewma", sessions, instruments)

    # Assert
    assert np.array_equal(np.isnan(actual), np.isnan(recursive))
    known = np.isfinite(actual)
    assert known.sum() > 0.5 * np.isfinite(close).sum()
    np.testing.assert_allclose(actual[known], recursive[known], rtol=1e-11, atol=0)


def test_ewma_weight_identity_with_small_and_large_session_idx_is_precise(warehouse_location: dict[str, str]) -> None:
    # Arrange: the model's weights exp(-s ln 0.94), summed by the database, at small and at
    # large session_idx (exp(9999 * 0.0619) ~ 1e269 is near the top of a double's range).
    rng = np.random.default_rng(3)
    r = rng.normal(0.0, 0.02, EWMA_SESSIONS)
    weight = "exp(-i * ln(cast(0.94 as double precision)))"
    expected, queries = [], []
    for last_idx in (300, 9_999):
        idx = np.arange(last_idx - EWMA_SESSIONS + 1, last_idx + 1)
        rows = ", ".join(f"({i}, cast({float(x)!r} as double precision))" for i, x in zip(idx, r, strict=True))
        queries.append(f"select sqrt(252 * sum({weight} * r * r) / sum({weight})) as vol from (values {rows}) as t(i, r)")
        w = LAMBDA ** (last_idx - idx.astype(float))
        expected.append(math.sqrt(ANNUAL * float(np.sum(w * r * r) / np.sum(w))))

    # Act
    with open_warehouse(**warehouse_location) as wh:
        actual = [float(wh.query(sql)["vol"][0]) for sql in queries]

    # Assert
    assert actual == pytest.approx(expected, rel=1e-13, abs=0)
