"""The synthetic world against the research-grade bar: a realistic cross-section, the stylized
facts of daily returns, several linked regions, lifecycle events as corporate actions, planted
signals of known strength, and ground truth that engines cannot reach."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.providers import provider_schema
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig, read_truth
from prometheus_lib.data.synthetic.facts import stylized_facts
from prometheus_lib.data.synthetic.truth import TRUTH_MARKER

START = date(2015, 1, 2)


@pytest.fixture(scope="module")
def xnys() -> TradingCalendar:
    return TradingCalendar("XNYS")


@pytest.fixture(scope="module")
def decade(xnys: TradingCalendar) -> tuple[SyntheticMarket, list[date], pl.DataFrame]:
    """150 instruments over eight years: enough sessions for every statistic the tests pin."""
    market = SyntheticMarket(SyntheticMarketConfig(n_instruments=150, seed=17), xnys)
    sessions = xnys.sessions(START, date(2022, 12, 30))
    return market, sessions, market.prices(sessions).frame


def _lagged(prices: pl.DataFrame) -> pl.DataFrame:
    return prices.sort("instrument_id", "session_date").with_columns(
        *(pl.col(c).shift(1).over("instrument_id").alias(f"prev_{c}") for c in ("close", "adjusted_close", "shares_outstanding"))
    )


# ---------------------------------------------------------------- corporate actions
def test_corporate_actions_with_eight_years_have_splits_dividends_delistings_in_schema(decade) -> None:
    # Arrange
    market, sessions, _ = decade

    # Act
    actions = market.corporate_actions(sessions)
    kinds = dict(actions.group_by("action_type").len().iter_rows())

    # Assert
    assert actions.schema == provider_schema("corporate_actions")
    assert actions["action_id"].is_unique().all()
    assert kinds.keys() == {"SPLIT", "DIVIDEND", "DELISTING"}
    assert kinds["SPLIT"] >= 5 and kinds["DELISTING"] >= 5 and kinds["DIVIDEND"] > 1000
    splits = actions.filter(pl.col("action_type") == "SPLIT")
    assert splits["ratio"].is_in([2.0, 3.0, 4.0, 5.0, 10.0, 0.1]).all() and splits["amount"].is_null().all()
    assert (actions.filter(pl.col("action_type") != "SPLIT")["amount"] > 0).all()


def test_prices_on_split_and_dividend_sessions_keep_total_return_in_adjusted_close(decade) -> None:
    # Arrange
    market, sessions, prices = decade
    actions = market.corporate_actions(sessions)
    lagged = _lagged(prices)

    # Act
    per_session = actions.group_by("instrument_id", "session_date").agg(
        ratio=pl.col("ratio").filter(pl.col("action_type") == "SPLIT").first().fill_null(1.0),
        amount=pl.col("amount").filter(pl.col("action_type") == "DIVIDEND").first().fill_null(0.0),
        has_split=(pl.col("action_type") == "SPLIT").any(),
        has_dividend=(pl.col("action_type") == "DIVIDEND").any(),
    )
    rows = lagged.join(per_session, on=["instrument_id", "session_date"])
    split = rows.filter("has_split")
    div = rows.filter("has_dividend")
    total = (div["close"] * div["ratio"] + div["amount"]) / div["prev_close"]

    # Assert: the holder's total return is the adjusted close's move, to rounding.
    np.testing.assert_allclose(total.to_numpy(), (div["adjusted_close"] / div["prev_adjusted_close"]).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(((split["close"] * split["ratio"] + split["amount"]) / split["prev_close"]).to_numpy(),
                               (split["adjusted_close"] / split["prev_adjusted_close"]).to_numpy(), rtol=1e-12)
    # Shares change by the ratio (and by net issuance, which only happens at an earnings call).
    calls = market.earnings_calls(sessions).select("instrument_id", "session_date", called=pl.lit(True))
    plain = split.join(calls, on=["instrument_id", "session_date"], how="left").filter(pl.col("called").is_null())
    assert plain.height > 10
    np.testing.assert_allclose(plain["shares_outstanding"].to_numpy(),
                               (plain["prev_shares_outstanding"] * plain["ratio"]).to_numpy(), rtol=1e-12)
    raw = (split["close"] / split["prev_close"]).log().abs()
    adjusted = (split["adjusted_close"] / split["prev_adjusted_close"]).log().abs()
    assert (raw > 0.5).all() and (adjusted < 0.3).all()  # a 2-for-1 is -50 % raw, a normal day adjusted


def test_adjusted_close_is_point_in_time_and_equals_close_on_listing(decade, xnys: TradingCalendar) -> None:
    # Arrange
    market, sessions, prices = decade
    later = SyntheticMarket(market.config, xnys).prices(sessions[1000:1010]).frame

    # Act
    same = prices.filter(pl.col("session_date").is_between(sessions[1000], sessions[1009]))
    listings = market.reference().instruments.select("instrument_id", "listing_date")
    first_rows = prices.join(listings, left_on=["instrument_id", "session_date"], right_on=["instrument_id", "listing_date"])

    # Assert
    assert later.equals(same)  # no back-adjustment: a later range never revises a session
    assert first_rows.height > 10 and (first_rows["adjusted_close"] == first_rows["close"]).all()


def test_delisted_instruments_keep_their_history_and_stop_at_the_delisting_session(decade) -> None:
    # Arrange
    market, sessions, prices = decade
    delistings = market.corporate_actions(sessions).filter(pl.col("action_type") == "DELISTING")

    # Act
    last = prices.group_by("instrument_id").agg(pl.col("session_date").max().alias("last"),
                                                pl.col("close").sort_by("session_date").last().alias("last_close"))
    joined = delistings.join(last, on="instrument_id")
    reference = market.reference().instruments.filter(pl.col("delisting_date") <= sessions[-1])

    # Assert
    assert joined.height == delistings.height >= 5
    assert (joined["last"] == joined["session_date"]).all()
    np.testing.assert_allclose(joined["amount"].to_numpy(), joined["last_close"].to_numpy())
    assert set(reference["instrument_id"]) == set(delistings["instrument_id"])


def test_prices_stay_in_realistic_ranges_across_splits(decade) -> None:
    # Arrange
    market, _, prices = decade
    cfg = market.config

    # Act
    closes = prices["close"]

    # Assert: a close above split_above splits the next session; reverse splits lift penny stocks.
    assert closes.max() < 1.6 * cfg.split_above
    assert closes.min() > 0.3 * cfg.reverse_split_below
    assert 20.0 < closes.median() < 200.0


# ---------------------------------------------------------------- stylized facts
@pytest.fixture(scope="module")
def facts(decade) -> dict[str, float]:
    market, sessions, prices = decade
    return {f"{f.scope}: {f.name}": f.value for f in stylized_facts(prices, market.true_regimes(sessions))}


def test_stylized_facts_of_the_index_hold(facts: dict[str, float]) -> None:
    assert 0.10 <= facts["index: annualised volatility (calm regime)"] <= 0.20
    assert facts["index: annualised volatility (crisis regime)"] > 1.5 * facts["index: annualised volatility (calm regime)"]
    assert facts["index: excess kurtosis of daily returns"] > 1.0
    assert abs(facts["index: autocorrelation of returns, lag 1"]) < 0.1
    assert facts["index: autocorrelation of |returns|, lag 1"] > 0.1
    assert facts["index: autocorrelation of |returns|, lag 50"] > 0.0
    assert facts["index: corr(r_t, |r| over t+1..t+10)"] < 0.0
    assert facts["index: excess kurtosis of 21-session returns"] < facts["index: excess kurtosis of daily returns"]


def test_stylized_facts_of_instruments_and_the_cross_section_hold(facts: dict[str, float]) -> None:
    assert facts["median instrument: excess kurtosis of daily returns"] > 2.0
    assert abs(facts["median instrument: autocorrelation of returns, lag 1"]) < 0.1
    assert facts["median instrument: autocorrelation of |returns|, lag 1"] > 0.05
    assert facts["median instrument: corr(log volume, |return|)"] > 0.1
    assert 0.18 <= facts["median instrument: annualised volatility"] <= 0.5
    assert (facts["cross-section: mean pairwise correlation (crisis regime)"]
            > facts["cross-section: mean pairwise correlation (calm regime)"] + 0.1)
    assert 0.03 <= facts["index: largest index weight (mean over sessions)"] <= 0.08
    assert 0.20 <= facts["index: top-ten index weight (mean over sessions)"] <= 0.35


def test_thirty_year_run_looks_like_a_two_year_one() -> None:
    # Arrange: 1995-2024 on one path; the first and last two years measured apart.
    calendar = TradingCalendar("XNYS", start=date(1994, 1, 3))
    market = SyntheticMarket(SyntheticMarketConfig(n_instruments=100, seed=5, history_start=date(1995, 1, 3)), calendar)
    sessions = calendar.sessions(date(1995, 1, 3), date(2024, 12, 31))
    prices = market.prices(sessions).frame

    # Act
    def window(lo: date, hi: date) -> dict[str, float]:
        part = prices.filter(pl.col("session_date").is_between(lo, hi))
        return {f.name: f.value for f in stylized_facts(part) if f.scope in ("index", "cross-section")}

    early, late = window(date(1995, 1, 3), date(1996, 12, 31)), window(date(2023, 1, 3), date(2024, 12, 31))

    # Assert
    for w in (early, late):
        assert 0.03 <= w["largest index weight (mean over sessions)"] <= 0.10, w
        assert 0.18 <= w["top-ten index weight (mean over sessions)"] <= 0.40, w
        assert 10.0 < w["median price level"] < 200.0, w
    assert prices["close"].max() < 1.6 * market.config.split_above
    assert abs(math.log(late["median price level"] / early["median price level"])) < math.log(3.0)


# ---------------------------------------------------------------- regions
@pytest.fixture(scope="module")
def regions() -> dict[str, tuple[SyntheticMarket, list[date]]]:
    out = {}
    for market_id, code, region, ccy, seed in (("US_EQ", "XNYS", "US", "USD", 1), ("EU_EQ", "XETR", "EU", "EUR", 2),
                                               ("JP_EQ", "XTKS", "JP", "JPY", 3)):
        cal = TradingCalendar(code)
        cfg = SyntheticMarketConfig(market_id=market_id, calendar_code=code, region=region, currency=ccy, seed=seed,
                                    id_prefix=f"S{region}", n_instruments=40, history_start=date(2015, 1, 5),
                                    world_seed=7)
        out[market_id] = (SyntheticMarket(cfg, cal), cal.sessions(date(2015, 1, 5), date(2024, 12, 30)))
    return out


def test_regions_share_the_global_regime_but_have_their_own(regions) -> None:
    # Arrange
    frames = {m: mk.true_regimes(s) for m, (mk, s) in regions.items()}

    # Act
    both = frames["US_EQ"].join(frames["EU_EQ"], on="session_date", suffix="_eu").join(
        frames["JP_EQ"], on="session_date", suffix="_jp")
    agree = (both["regime"] == both["regime_eu"]).mean()
    crisis_alone = both.filter((pl.col("regime") == "crisis") != (pl.col("regime_eu") == "crisis")).height

    # Assert
    assert (both["global_regime"] == both["global_regime_eu"]).all() and (both["global_regime"] == both["global_regime_jp"]).all()
    assert 0.6 < agree < 1.0
    assert crisis_alone > 0  # a crisis can start (or last) in one region only
    for frame in frames.values():
        assert set(frame["regime"]) == {"calm", "volatile", "crisis"}


def test_cross_region_correlation_rises_in_global_stress(regions) -> None:
    # Arrange
    us = regions["US_EQ"][0].true_regimes(regions["US_EQ"][1])
    eu = regions["EU_EQ"][0].true_regimes(regions["EU_EQ"][1])
    both = us.join(eu, on="session_date", suffix="_eu")

    # Act
    def corr(frame: pl.DataFrame) -> float:
        return float(np.corrcoef(frame["market_return"].to_numpy(), frame["market_return_eu"].to_numpy())[0, 1])

    calm = corr(both.filter((pl.col("regime") == "calm") & (pl.col("regime_eu") == "calm")))
    crisis = corr(both.filter((pl.col("regime") == "crisis") & (pl.col("regime_eu") == "crisis")))

    # Assert
    assert 0.1 < calm < crisis


def test_regions_trade_on_their_own_calendars_and_currencies(regions) -> None:
    # Arrange
    eu, eu_sessions = regions["EU_EQ"]
    jp, jp_sessions = regions["JP_EQ"]

    # Act
    eu_prices = eu.prices(eu_sessions[:300]).frame
    jp_prices = jp.prices(jp_sessions[:300]).frame

    # Assert
    assert set(eu_prices["currency"]) == {"EUR"} and set(jp_prices["currency"]) == {"JPY"}
    assert eu_prices["instrument_id"].str.starts_with("SEU").all() and jp_prices["instrument_id"].str.starts_with("SJP").all()
    assert date(2015, 5, 1) not in set(eu_prices["session_date"])  # Labour Day: no XETR session
    assert date(2015, 1, 12) not in set(jp_prices["session_date"])  # Coming of Age Day
    assert set(eu_prices["market_id"]) == {"EU_EQ"} and set(jp_prices["market_id"]) == {"JP_EQ"}


# ---------------------------------------------------------------- planted signals and truth
def test_oracle_ics_recover_the_planted_strengths(decade) -> None:
    # Arrange
    market, sessions, _ = decade

    # Act
    ics = {r["signal"]: r for r in market.oracle_ics(sessions[:-30]).iter_rows(named=True)}

    # Assert: each planted signal is there, of the configured order of magnitude.
    assert 0.015 < ics["momentum"]["oracle_rank_ic"] < 0.06
    assert 0.005 < ics["low_vol"]["oracle_rank_ic"] < 0.05
    assert 0.02 < ics["pead"]["oracle_rank_ic"] < 0.10
    assert 0.15 < ics["news_tone"]["oracle_rank_ic"] < 0.35
    assert ics["alpha"]["oracle_rank_ic"] > ics["momentum"]["oracle_rank_ic"]


def test_fragility_events_have_measurable_precursors_and_large_drawdowns(decade) -> None:
    # Arrange
    market, sessions, prices = decade
    events = market.true_fragility_events(sessions)
    lagged = _lagged(prices).with_columns(r=(pl.col("adjusted_close") / pl.col("prev_adjusted_close")).log())

    # Act: |return| and volume in the 10 sessions before the crash against the 20 before the onset.
    ratios_vol, ratios_liq = [], []
    for e in events.iter_rows(named=True):
        rows = lagged.filter(pl.col("instrument_id") == e["instrument_id"])
        before = rows.filter(pl.col("session_date") < e["onset_date"]).tail(20)
        late = rows.filter(pl.col("session_date") < e["crash_start_date"]).tail(10)
        if before.height == 20 and late.height == 10:
            ratios_vol.append(late["r"].abs().mean() / before["r"].abs().mean())
            ratios_liq.append(late["volume"].median() / before["volume"].median())

    # Assert
    assert events.height >= 20
    assert events["realised_drawdown"].median() < -0.15
    assert np.median(ratios_vol) > 1.2 and np.median(ratios_liq) < 0.9


def test_earnings_surprise_is_the_planted_one_and_moves_the_price(decade) -> None:
    # Arrange
    market, sessions, prices = decade
    calls = market.earnings_calls(sessions[:500])
    truth = market.true_signals(sessions[:500]).drop_nulls("earnings_surprise")

    # Act
    joined = calls.join(truth, on=["instrument_id", "session_date"])
    eps_surprise = joined["eps_actual"] - joined["eps_consensus"]

    # Assert
    assert joined.height == calls.height
    assert np.corrcoef(eps_surprise.to_numpy(), joined["earnings_surprise"].to_numpy())[0, 1] > 0.5


def test_truth_frames_are_marked_and_refused_by_the_warehouse(decade, tmp_path: Path) -> None:
    # Arrange
    market, sessions, _ = decade
    from prometheus_lib.errors import UnknownTableError
    from prometheus_lib.storage.factory import open_warehouse

    # Act / Assert
    for frame in (market.true_regimes(sessions[:5]), market.true_signals(sessions[:5]), market.true_exposures()):
        assert frame.columns[0] == TRUTH_MARKER
    with open_warehouse(backend="duckdb", duckdb_path=str(tmp_path / "w.duckdb")) as wh:
        with pytest.raises(UnknownTableError):
            wh.read_table("synthetic_truth.regimes")


def test_time_machine_refuses_truth_frames_and_names(decade) -> None:
    # Arrange
    from prometheus_lib.execution.time_machine import TimeMachine

    market, sessions, prices = decade
    tm = TimeMachine(sessions[:10])

    # Act / Assert
    for frame in (market.true_regimes(sessions[:10]), market.true_signals(sessions[:10])):
        with pytest.raises(PermissionError, match="ground truth"):
            tm.register("anything", frame)
    with pytest.raises(PermissionError, match="ground truth"):
        tm.register("synthetic_truth.signals", prices.head(5))
    tm.register("prices_daily", prices.filter(pl.col("session_date") <= sessions[9]))  # data, not truth


def test_record_truth_writes_parquet_idempotently_and_reads_back(decade, tmp_path: Path) -> None:
    # Arrange
    market, sessions, _ = decade
    root = tmp_path / "synthetic_truth" / "US_EQ"

    # Act
    first = market.record_truth(sessions[200:260], root)
    market.record_truth(sessions[230:300], root)  # overlapping: replaces those sessions
    regimes = read_truth(root, "regimes")
    signals = read_truth(root, "signals")

    # Assert
    assert all(p.exists() for p in first)
    assert regimes["session_date"].to_list() == sessions[200:300]
    assert regimes.drop(TRUTH_MARKER).equals(market.true_regimes(sessions[200:300]).drop(TRUTH_MARKER))
    assert not signals.select("session_date", "instrument_id").is_duplicated().any()
    assert read_truth(root, "oracle_ics")["signal"].to_list() == ["momentum", "low_vol", "alpha", "pead", "news_tone"]
    assert not list(root.rglob("*.tmp"))
