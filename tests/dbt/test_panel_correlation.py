"""correlation_panels: PAIR, MARKET_AVG and SECTOR_AVG against an independent numpy reference.

A 25-instrument synthetic market over 271 sessions, five of them IPOs listing inside the range
and one large instrument suspended for two sessions, is built once per backend; the reference
works from the prices frame only (numpy log returns, np.corrcoef, the variance-ratio identity).

The build runs once per backend (a module fixture rather than ``warehouse_location``, which is
per test; its tests stay on one xdist worker) and selects ``staging +correlation_panels``: dbt's
eager test selection also runs the staging relationship tests, whose other end (markets,
issuers, text views) must be built too.
The range ends 74 sessions after the last IPO's first return, so its last windows are balanced.
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
from prometheus_lib.storage.dbt import DbtRun
from sharing import backend_params, new_location

if TYPE_CHECKING:
    from conftest import PgDatabases

START, END = date(2015, 1, 2), date(2016, 1, 29)  # 271 XNYS sessions; IPOs list in the first 200
N_INSTRUMENTS = 25
WINDOW = 63
UNIVERSE_SIZE = 20  # the model's default var correlation_universe_size
TOLERANCE = 1e-9
SUSPENDED_SESSIONS = (date(2015, 6, 1), date(2015, 6, 2))
RERUN_START, RERUN_END = date(2015, 5, 15), date(2015, 8, 14)  # around the suspension and two IPOs
KEY = ["session_date", "panel_id", "entity_a", "entity_b"]


# ---------------------------------------------------------------- builders
def _frames() -> dict[str, pl.DataFrame]:
    """The synthetic market, with the largest instrument's prices removed on two sessions."""
    frames = dict(synthetic_frames(N_INSTRUMENTS, START, END))
    largest = frames["instruments"].sort("shares_outstanding", descending=True)["instrument_id"][0]
    prices = frames["prices_daily"]
    frames["prices_daily"] = prices.filter(
        ~((pl.col("instrument_id") == largest) & pl.col("session_date").is_in(SUSPENDED_SESSIONS))
    )
    return frames


@dataclass(frozen=True)
class Built:
    location: dict[str, str]
    run: DbtRun
    panel: pl.DataFrame


@pytest.fixture(scope="module", params=backend_params("panel_correlation"))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_databases: PgDatabases) -> Built:
    """The market filled into a fresh warehouse of each backend and the panels built once."""
    location = new_location(request.param, tmp_path_factory.mktemp("corr"), pg_databases)
    fill_market(location, _frames(), START, END)
    run = build_panels(location, START, END, select="staging +correlation_panels")
    return Built(location, run, read_panel(location, "correlation_panels"))


@dataclass(frozen=True)
class Market:
    sessions: list[date]
    instruments: list[str]
    returns: np.ndarray  # sessions x instruments log returns, NaN where unknown
    sectors: dict[str, str]
    universe: list[str]


@functools.cache
def _market() -> Market:
    """Log total returns of the prices frame: ln(adjusted_t / adjusted_t-1) over consecutive sessions.

    adjusted is adjusted_close, or close where it is null (no corporate action).
    """
    frames = _frames()
    adjusted = frames["prices_daily"].with_columns(adjusted=pl.col("adjusted_close").fill_null(pl.col("close")))
    closes = adjusted.pivot(on="instrument_id", index="session_date", values="adjusted").sort("session_date")
    instruments = sorted(c for c in closes.columns if c != "session_date")
    close = closes.select(instruments).to_numpy().astype(float)
    returns = np.full_like(close, np.nan)
    returns[1:] = np.log(close[1:] / close[:-1])
    reference = frames["instruments"]
    universe = reference.sort(["shares_outstanding", "instrument_id"], descending=[True, False]).head(UNIVERSE_SIZE)
    return Market(
        sessions=closes["session_date"].to_list(),
        instruments=instruments,
        returns=returns,
        sectors=dict(zip(reference["instrument_id"], reference["sector"], strict=True)),
        # the model ranks every reference instrument; one without a price in the range has no pair
        universe=sorted(set(universe["instrument_id"]) & set(instruments)),
    )


def _full_columns(market: Market, t: int, members: list[str]) -> list[str]:
    """The members with a return on every session of the window ending at session index t."""
    if t < WINDOW - 1:
        return []
    window = market.returns[t - WINDOW + 1 : t + 1]
    return [m for m in members if not np.isnan(window[:, market.instruments.index(m)]).any()]


def _window(market: Market, t: int, members: list[str]) -> np.ndarray:
    cols = [market.instruments.index(m) for m in members]
    return market.returns[t - WINDOW + 1 : t + 1][:, cols]


def _variance_ratio(x: np.ndarray) -> float:
    """(Var(P) - sum w^2 s_i^2) / ((sum w s_i)^2 - sum w^2 s_i^2), w = 1/N, P_t = sum w r_it."""
    n = x.shape[1]
    w = np.full(n, 1.0 / n)
    sigma = x.std(axis=0, ddof=1)
    portfolio_variance = (x @ w).var(ddof=1)
    own = np.sum(w**2 * sigma**2)
    return float((portfolio_variance - own) / (np.sum(w * sigma) ** 2 - own))


def _reference_averages(market: Market) -> pl.DataFrame:
    groups: dict[tuple[str, str], list[str]] = {("MARKET_AVG", "ALL"): market.instruments}
    for instrument in market.instruments:
        groups.setdefault(("SECTOR_AVG", market.sectors[instrument]), []).append(instrument)
    rows = []
    for t, session in enumerate(market.sessions):
        for (panel_id, entity), members in groups.items():
            full = _full_columns(market, t, members)
            if len(full) >= 2:
                rows.append({"session_date": session, "panel_id": panel_id, "entity_a": entity, "entity_b": entity,
                             "expected": _variance_ratio(_window(market, t, full)), "expected_n": len(full)})
    return pl.DataFrame(rows)


def _reference_pairs(market: Market) -> pl.DataFrame:
    rows = []
    for t, session in enumerate(market.sessions):
        full = _full_columns(market, t, market.universe)
        if len(full) < 2:
            continue
        corr = np.corrcoef(_window(market, t, full), rowvar=False)
        for i, a in enumerate(full):
            for j in range(i + 1, len(full)):
                rows.append({"session_date": session, "panel_id": "PAIR", "entity_a": a, "entity_b": full[j],
                             "expected": float(corr[i, j]), "expected_n": WINDOW})
    return pl.DataFrame(rows)


def _compare(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Same keys present, values and n_obs equal (correlation to TOLERANCE)."""
    joined = actual.join(expected, on=KEY, how="full", coalesce=True)
    missing = joined.filter(pl.col("correlation").is_null() & pl.col("n_obs").is_null())
    extra = joined.filter(pl.col("expected").is_null())
    assert missing.is_empty(), f"rows the reference has and the panel lacks:\n{missing}"
    assert extra.is_empty(), f"rows the panel has and the reference lacks:\n{extra}"
    worst = joined.with_columns(error=(pl.col("correlation") - pl.col("expected")).abs()).sort("error", descending=True)
    assert worst["error"][0] < TOLERANCE, worst.head(5)
    assert (joined["n_obs"] == joined["expected_n"]).all(), joined.filter(pl.col("n_obs") != pl.col("expected_n"))


# ---------------------------------------------------------------- tests
def test_build_with_ipos_and_suspension_passes_models_unit_and_data_tests(built: Built) -> None:
    # Assert
    assert built.run.returncode == 0, built.run.stdout + built.run.stderr
    assert not built.run.failed, built.run.failed
    assert "correlation_panels_full_windows_only_with_gap_and_entry" in built.run.results
    assert set(built.panel["panel_id"].unique()) == {"PAIR", "MARKET_AVG", "SECTOR_AVG"}
    assert (built.panel["window_sessions"] == WINDOW).all()
    assert (built.panel["market_id"] == "US_EQ").all()


def test_pair_panel_with_bounded_universe_matches_numpy_corrcoef(built: Built) -> None:
    # Arrange
    market = _market()
    expected = _reference_pairs(market)

    # Act
    actual = built.panel.filter(pl.col("panel_id") == "PAIR")

    # Assert
    _compare(actual, expected)
    entities = set(actual["entity_a"]) | set(actual["entity_b"])
    assert entities <= set(market.universe) and len(market.universe) < len(market.instruments)


def test_average_panels_with_entries_and_suspension_match_variance_ratio_reference(built: Built) -> None:
    # Arrange
    market = _market()
    expected = _reference_averages(market)

    # Act
    actual = built.panel.filter(pl.col("panel_id") != "PAIR")

    # Assert
    _compare(actual, expected)
    market_n = actual.filter(pl.col("panel_id") == "MARKET_AVG")["n_obs"]
    assert market_n.n_unique() > 1, "no instrument entered or left: the test lost its point"
    assert actual.filter(pl.col("panel_id") == "SECTOR_AVG")["entity_a"].n_unique() >= 2


def test_market_average_on_balanced_window_equals_sigma_weighted_mean_of_pairwise_correlations(built: Built) -> None:
    # Arrange: windows where every instrument that trades in the window trades on all of it.
    market = _market()
    panel = built.panel.filter(pl.col("panel_id") == "MARKET_AVG")
    by_session = dict(zip(panel["session_date"], panel["correlation"], strict=True))
    checked = 0
    for t in range(WINDOW - 1, len(market.sessions)):
        window = market.returns[t - WINDOW + 1 : t + 1]
        traded = ~np.isnan(window).all(axis=0)
        if not (~np.isnan(window[:, traded])).all():
            continue
        x = window[:, traded]
        corr = np.corrcoef(x, rowvar=False)
        sigma = x.std(axis=0, ddof=1)
        weights = np.outer(sigma, sigma)
        off_diagonal = ~np.eye(len(sigma), dtype=bool)
        weighted_mean = np.sum(corr[off_diagonal] * weights[off_diagonal]) / np.sum(weights[off_diagonal])

        # Act
        actual = by_session[market.sessions[t]]

        # Assert
        assert abs(actual - weighted_mean) < TOLERANCE, (market.sessions[t], actual, weighted_mean)
        checked += 1
    # Delistings and the listings that replace them (besides the planted IPOs) leave fewer fully
    # balanced windows than a fixed universe did; each one checked is an exact comparison.
    assert checked >= 5, f"only {checked} balanced windows"


def test_rerun_of_a_window_with_entries_and_suspension_reproduces_the_full_build(built: Built) -> None:
    # Act: rewrite one window of sessions incrementally (its look-back read from the table).
    run = build_panels(built.location, RERUN_START, RERUN_END, select="correlation_panels")

    # Assert
    assert run.returncode == 0 and not run.failed, run.stdout + run.stderr
    rerun = read_panel(built.location, "correlation_panels")
    assert rerun.height == built.panel.height
    joined = built.panel.join(rerun, on=KEY, how="full", coalesce=True, suffix="_rerun")
    assert joined["correlation"].null_count() == 0 and joined["correlation_rerun"].null_count() == 0
    assert ((joined["correlation"] - joined["correlation_rerun"]).abs() < 1e-12).all()
    assert (joined["n_obs"] == joined["n_obs_rerun"]).all()
    window = built.panel.filter(pl.col("session_date").is_between(RERUN_START, RERUN_END))
    assert window["panel_id"].n_unique() == 3
