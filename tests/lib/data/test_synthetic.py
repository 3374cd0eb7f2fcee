"""Specification of the synthetic market: contract shape, bar consistency, determinism,
point-in-time behaviour, the statistical truths it plants, and its text/event feeds."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.providers import EventDataProvider, MarketDataProvider, provider_schema
from prometheus_lib.data.synthetic import (
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    SyntheticMarket,
    SyntheticMarketConfig,
)
from prometheus_lib.data.synthetic.world import BLOCK, weekday_ordinal
from prometheus_lib.errors import ConfigError, NotSessionError

HISTORY_START = date(2015, 1, 2)


@pytest.fixture(scope="module")
def calendar() -> TradingCalendar:
    return TradingCalendar("XNYS")


@pytest.fixture(scope="module")
def two_year_sessions(calendar: TradingCalendar) -> list[date]:
    return calendar.sessions(HISTORY_START, date(2016, 12, 30))


@pytest.fixture(scope="module")
def market(calendar: TradingCalendar) -> SyntheticMarket:
    return SyntheticMarket(SyntheticMarketConfig(n_instruments=80, seed=11), calendar)


@pytest.fixture(scope="module")
def two_year_prices(market: SyntheticMarket, two_year_sessions: list[date]) -> pl.DataFrame:
    return market.prices(two_year_sessions).frame


def _event_frames(market: SyntheticMarket, sessions: list[date]) -> dict[str, pl.DataFrame]:
    articles, links = market.news(sessions)
    return {
        "prices_daily": market.prices(sessions).frame,
        "news_articles": articles,
        "news_links": links,
        "filings": market.filings(sessions),
        "earnings_calls": market.earnings_calls(sessions),
        "macro_events": market.macro_events(sessions),
    }


def _with_returns(prices: pl.DataFrame) -> pl.DataFrame:
    """Add per-instrument log return, past and forward 5-session simple returns."""
    close = pl.col("adjusted_close")
    return prices.sort("instrument_id", "session_date").with_columns(
        log_return=(close / close.shift(1)).log().over("instrument_id"),
        past_5=(close / close.shift(5) - 1.0).over("instrument_id"),
        forward_5=(close.shift(-5) / close - 1.0).over("instrument_id"),
    )


# ---------------------------------------------------------------- config
def test_config_with_defaults_is_frozen_and_matches_markets_yaml_keys() -> None:
    # Arrange
    config = SyntheticMarketConfig(seed=42, n_instruments=100, market_id="US_EQ", currency="USD",
                                   calendar_code="XNYS", history_start=date(2015, 1, 2))

    # Act / Assert
    with pytest.raises(ValidationError):
        config.seed = 1  # type: ignore[misc]
    assert config == SyntheticMarketConfig()


def test_config_with_unknown_key_raises_validation_error() -> None:
    # Arrange / Act / Assert
    with pytest.raises(ValidationError, match="n_stocks"):
        SyntheticMarketConfig(n_stocks=5)  # type: ignore[call-arg]


def test_config_with_transition_row_not_summing_to_one_raises_naming_row() -> None:
    # Arrange
    bad = ((0.9, 0.05, 0.0), (0.025, 0.965, 0.010), (0.005, 0.045, 0.950))

    # Act / Assert
    with pytest.raises(ValidationError, match=r"regime_transition row 'calm' must sum to 1, was \[0.9, 0.05, 0.0\]"):
        SyntheticMarketConfig(regime_transition=bad)


def test_config_with_nonstationary_garch_raises_naming_parameters() -> None:
    # Arrange / Act / Assert
    with pytest.raises(ValidationError, match=r"garch_alpha \+ garch_beta must be < 1"):
        SyntheticMarketConfig(garch_alpha=0.2, garch_beta=0.85)


@pytest.mark.parametrize("n_instruments", [0, 5001])
def test_config_with_n_instruments_out_of_range_raises(n_instruments: int) -> None:
    # Arrange / Act / Assert
    with pytest.raises(ValidationError, match="n_instruments"):
        SyntheticMarketConfig(n_instruments=n_instruments)


def test_market_with_mismatched_calendar_raises_config_error(calendar: TradingCalendar) -> None:
    # Arrange
    config = SyntheticMarketConfig(calendar_code="XETR")

    # Act / Assert
    with pytest.raises(ConfigError, match="'XNYS' does not match config.calendar_code 'XETR'"):
        SyntheticMarket(config, calendar)


# ---------------------------------------------------------------- contract
def test_market_with_default_config_implements_both_provider_protocols(market: SyntheticMarket) -> None:
    # Arrange / Act / Assert
    assert isinstance(market, MarketDataProvider)
    assert isinstance(market, EventDataProvider)
    assert market.source == "synthetic"
    assert market.market_id == "US_EQ"


def test_frames_with_two_year_range_match_provider_schemas(market: SyntheticMarket, two_year_sessions: list[date]) -> None:
    # Arrange / Act
    frames = _event_frames(market, two_year_sessions)
    reference = market.reference()

    # Assert
    for table, frame in frames.items():
        assert frame.schema == provider_schema(table), table
        assert frame.height > 0, table
    assert reference.issuers.schema == provider_schema("issuers")
    assert reference.instruments.schema == provider_schema("instruments")


def test_frames_with_sessions_before_history_start_are_empty_with_schema(market: SyntheticMarket, calendar: TradingCalendar) -> None:
    # Arrange
    before = calendar.sessions(date(2014, 12, 1), date(2014, 12, 31))

    # Act
    frames = _event_frames(market, before)

    # Assert
    for table, frame in frames.items():
        assert frame.height == 0, table
        assert frame.schema == provider_schema(table), table


def test_reference_with_default_config_has_unique_ids_tickers_and_known_sectors(market: SyntheticMarket) -> None:
    # Arrange / Act
    instruments = market.reference().instruments
    issuers = market.reference().issuers

    # Assert
    assert instruments["instrument_id"].is_unique().all()
    assert instruments["ticker"].is_unique().all()
    assert instruments["ticker"].str.contains(r"^[A-Z]{3,4}$").all()
    assert instruments["instrument_id"][0] == "SYN0001"
    assert issuers["issuer_id"][0] == "SYN-ISS-0001"
    assert set(instruments["issuer_id"]) == set(issuers["issuer_id"])
    assert instruments["sector"].n_unique() == market.config.n_sectors
    assert (instruments["shares_outstanding"] > 0).all()
    assert set(instruments["asset_class"]) == {"EQUITY"}
    delisted = instruments.filter(pl.col("delisting_date").is_not_null())
    assert delisted.height > 0 and (delisted["delisting_date"] > delisted["listing_date"]).all()
    assert set(delisted["status"]) == {"DELISTED"}
    assert set(instruments.filter(pl.col("delisting_date").is_null())["status"]) == {"ACTIVE"}
    first_generation = instruments.filter(pl.col("instrument_id") <= f"SYN{market.config.n_instruments:04d}")
    n_ipo = (first_generation["listing_date"] > HISTORY_START).sum()
    assert n_ipo == round(market.config.ipo_fraction * market.config.n_instruments)
    assert instruments.height > market.config.n_instruments  # replacements list after delistings


# ---------------------------------------------------------------- bars
def test_prices_with_two_year_run_have_consistent_ohlc_and_volume_zero_only_when_halted(
    market: SyntheticMarket, two_year_prices: pl.DataFrame, two_year_sessions: list[date]
) -> None:
    # Arrange
    halted = market.true_signals(two_year_sessions).filter("halted").select("instrument_id", "session_date")
    p = two_year_prices
    body_high = np.maximum(p["open"].to_numpy(), p["close"].to_numpy())
    body_low = np.minimum(p["open"].to_numpy(), p["close"].to_numpy())

    # Act / Assert
    assert p.height > 30_000
    assert p["close"].null_count() == 0
    assert np.all(p["high"].to_numpy() >= body_high)
    assert np.all(body_high >= body_low)
    assert np.all(body_low >= p["low"].to_numpy())
    assert np.all(p["low"].to_numpy() > 0.0)
    zero = p.filter(pl.col("volume") == 0.0).select("instrument_id", "session_date")
    assert halted.height > 0 and zero.sort(zero.columns).equals(halted.sort(halted.columns))
    assert np.all(p["volume"].to_numpy() >= 0.0)
    assert np.all(p["volume"].to_numpy() == np.round(p["volume"].to_numpy()))
    assert (p["adjusted_close"] > 0).all() and (p["shares_outstanding"] > 0).all()
    assert not p.select("instrument_id", "session_date").is_duplicated().any()


def test_prices_with_full_range_cover_every_session_and_no_other_day(
    two_year_prices: pl.DataFrame, two_year_sessions: list[date], calendar: TradingCalendar
) -> None:
    # Arrange
    dates = set(two_year_prices["session_date"].unique().to_list())

    # Act / Assert
    assert dates == set(two_year_sessions)
    assert all(calendar.is_session(d) for d in dates)


def test_prices_with_ipo_instruments_have_no_rows_before_listing_and_every_session_after(
    market: SyntheticMarket, two_year_prices: pl.DataFrame, two_year_sessions: list[date]
) -> None:
    # Arrange
    listings = market.reference().instruments.select("instrument_id", "listing_date")
    ipos = listings.filter(pl.col("listing_date").is_between(date(2015, 2, 1), two_year_sessions[-1]))
    assert ipos.height >= 2  # the fixture's world must list some names inside the window

    # Act
    counts = (
        two_year_prices.join(listings, on="instrument_id")
        .group_by("instrument_id")
        .agg(
            before=(pl.col("session_date") < pl.col("listing_date")).sum(),
            first=pl.col("session_date").min(),
            rows=pl.len(),
            listing=pl.col("listing_date").first(),
        )
    )

    # Assert
    assert counts["before"].sum() == 0
    for row in counts.join(ipos, on="instrument_id").iter_rows(named=True):
        expected = sum(1 for d in two_year_sessions if d >= row["listing"])
        assert row["first"] == row["listing"]
        assert row["rows"] == expected


# ---------------------------------------------------------------- determinism and point in time
def test_frames_with_same_config_are_identical_and_with_other_seed_differ(calendar: TradingCalendar) -> None:
    # Arrange
    sessions = calendar.sessions(date(2016, 3, 1), date(2016, 6, 30))
    config = SyntheticMarketConfig(n_instruments=40, seed=5, news_rate=0.2)

    # Act
    a = _event_frames(SyntheticMarket(config, calendar), sessions)
    b = _event_frames(SyntheticMarket(config, calendar), sessions)
    c = _event_frames(SyntheticMarket(config.model_copy(update={"seed": 6}), calendar), sessions)

    # Assert
    for table in a:
        assert a[table].equals(b[table]), table
    assert not a["prices_daily"].equals(c["prices_daily"])
    assert not a["news_articles"].equals(c["news_articles"])


def test_frames_with_one_call_equal_per_session_concatenation(calendar: TradingCalendar) -> None:
    # Arrange
    sessions = calendar.sessions(date(2017, 1, 3), date(2017, 3, 31))
    config = SyntheticMarketConfig(n_instruments=30, seed=3, news_rate=0.3, filing_8k_rate=0.05)

    # Act
    whole = _event_frames(SyntheticMarket(config, calendar), sessions)
    single_market = SyntheticMarket(config, calendar)
    parts = [_event_frames(single_market, [d]) for d in sessions]

    # Assert
    for table, frame in whole.items():
        concatenated = pl.concat([p[table] for p in parts])
        assert frame.height > 0, table
        assert frame.equals(concatenated), table


def test_prices_with_range_ending_later_give_identical_rows_for_session(calendar: TradingCalendar) -> None:
    # Arrange
    config = SyntheticMarketConfig(n_instruments=25, seed=9)
    t = date(2018, 6, 29)
    short = calendar.sessions(date(2018, 1, 2), t)
    long = calendar.sessions(date(2018, 1, 2), calendar.session_offset(t, 100))

    # Act
    a = SyntheticMarket(config, calendar).prices(short).frame
    b = SyntheticMarket(config, calendar).prices(long).frame
    c = SyntheticMarket(config, calendar).prices([t]).frame

    # Assert
    assert a.filter(pl.col("session_date") == t).equals(b.filter(pl.col("session_date") == t))
    assert a.filter(pl.col("session_date") == t).equals(c)
    assert a.equals(b.filter(pl.col("session_date") <= t))


class _FutureTamperedMarket(SyntheticMarket):
    """Plants different random draws for every weekday step (and world block) after a cutoff.

    The market's price draws are keyed by the weekday step, its text draws by the session
    ordinal, and the world's by blocks of 256 weekdays: each is tampered strictly after the
    cutoff in its own unit.
    """

    def __init__(self, config: SyntheticMarketConfig, calendar: TradingCalendar, cutoff_step: int) -> None:
        self._cutoff_step = cutoff_step
        super().__init__(config, calendar)

    def _rng(self, stream: int, *key: int) -> np.random.Generator:
        if stream == 1 and key[-1] > self._cutoff_step:  # price stream: keyed by step
            return np.random.default_rng([999, stream, *key])
        if stream != 1 and key and key[0] > np.searchsorted(self._session_steps, self._cutoff_step, side="right") - 1:
            return np.random.default_rng([999, stream, *key])
        return super()._rng(stream, *key)

    def _world_rng(self, stream: int, *key: int) -> np.random.Generator:
        if key[-1] > self._cutoff_step // BLOCK:
            return np.random.default_rng([999, stream, *key])
        return super()._world_rng(stream, *key)


def test_prices_with_future_draws_tampered_are_unchanged_up_to_cutoff(calendar: TradingCalendar) -> None:
    # Arrange: the cutoff is the last step of a world block, so world and market are cut together.
    config = SyntheticMarketConfig(n_instruments=20, seed=4)
    sessions = calendar.sessions(HISTORY_START, date(2015, 12, 31))
    first_step = weekday_ordinal(HISTORY_START)
    cutoff_step = (first_step // BLOCK + 1) * BLOCK - 1
    honest = SyntheticMarket(config, calendar)
    tampered = _FutureTamperedMarket(config, calendar, cutoff_step)
    t = max(d for d in sessions if weekday_ordinal(d) <= cutoff_step)

    # Act: news forces the path 5 sessions past the range, through the tampered future.
    tampered.news(sessions)
    a = honest.prices(sessions).frame
    b = tampered.prices(sessions).frame
    ca, cb = honest.corporate_actions(sessions), tampered.corporate_actions(sessions)

    # Assert
    assert t > sessions[100]
    assert a.filter(pl.col("session_date") <= t).equals(b.filter(pl.col("session_date") <= t))
    assert not a.filter(pl.col("session_date") > t).equals(b.filter(pl.col("session_date") > t))
    assert ca.filter(pl.col("session_date") <= t).equals(cb.filter(pl.col("session_date") <= t))
    assert honest.true_regimes(sessions).filter(pl.col("session_date") <= t).equals(
        tampered.true_regimes(sessions).filter(pl.col("session_date") <= t))


def test_prices_with_non_session_date_raise_not_session_error(market: SyntheticMarket) -> None:
    # Arrange
    saturday = date(2016, 1, 2)

    # Act / Assert
    with pytest.raises(NotSessionError, match="2016-01-02 is not a XNYS session"):
        market.prices([saturday])


# ---------------------------------------------------------------- statistical truths
@pytest.fixture(scope="module")
def long_prices(calendar: TradingCalendar) -> pl.DataFrame:
    sessions = calendar.sessions(HISTORY_START, date(2023, 6, 30))  # ~2,140 sessions
    market = SyntheticMarket(SyntheticMarketConfig(n_instruments=60, seed=21, ipo_fraction=0.0), calendar)
    return _with_returns(market.prices(sessions).frame)


def test_market_returns_with_2000_sessions_show_volatility_clustering(long_prices: pl.DataFrame) -> None:
    # Arrange
    market = long_prices.group_by("session_date").agg(pl.col("log_return").mean()).sort("session_date").drop_nulls()
    absolute = np.abs(market["log_return"].to_numpy())

    # Act
    acf = [np.corrcoef(absolute[lag:], absolute[:-lag])[0, 1] for lag in (1, 5, 20)]

    # Assert
    assert absolute.shape[0] > 2000
    assert min(acf) > 0.1, acf


def test_instrument_returns_with_factor_structure_are_positively_correlated(long_prices: pl.DataFrame) -> None:
    # Arrange
    wide = long_prices.drop_nulls("log_return").pivot(on="instrument_id", index="session_date", values="log_return")
    returns = wide.drop("session_date").to_numpy()
    returns = returns[:, np.isfinite(returns).all(axis=0)]  # instruments listed throughout

    # Act
    corr = np.corrcoef(returns, rowvar=False)
    n = corr.shape[0]
    average_pairwise = (corr.sum() - n) / (n * (n - 1))

    # Assert
    assert 0.08 < average_pairwise < 0.6, average_pairwise


def _crude_sentiment(text: pl.Series) -> np.ndarray:
    positive, negative = set(POSITIVE_WORDS), set(NEGATIVE_WORDS)
    scores = []
    for doc in text.to_list():
        tokens = re.findall(r"[a-z]+", doc.lower())
        scores.append(sum(t in positive for t in tokens) - sum(t in negative for t in tokens))
    return np.array(scores, dtype=float)


def test_news_sentiment_with_crude_word_score_tracks_forward_not_past_returns(calendar: TradingCalendar) -> None:
    # Arrange
    sessions = calendar.sessions(HISTORY_START, date(2017, 12, 29))
    market = SyntheticMarket(SyntheticMarketConfig(n_instruments=150, seed=8, news_rate=0.12), calendar)
    prices = _with_returns(market.prices(sessions).frame)
    articles, links = market.news(sessions)

    # Act
    scored = articles.with_columns(
        score=pl.Series(_crude_sentiment(articles["headline"] + " " + articles["body"]))
    )
    panel = (
        links.filter(pl.col("relevance") == 1.0)
        .join(scored.select("article_id", "score"), on="article_id")
        .join(prices.select("instrument_id", "session_date", "past_5", "forward_5"), on=["instrument_id", "session_date"])
        .drop_nulls(["past_5", "forward_5"])
    )
    forward = np.corrcoef(panel["score"].to_numpy(), panel["forward_5"].to_numpy())[0, 1]
    past = np.corrcoef(panel["score"].to_numpy(), panel["past_5"].to_numpy())[0, 1]

    # Assert
    assert panel.height > 10_000
    assert forward > 0.1, forward  # the world plants 0.3 on the latent; words blur it
    assert abs(past) < 0.04, past  # no link backwards: only sampling noise


# ---------------------------------------------------------------- events
def test_news_with_two_year_range_is_published_by_the_session_close(
    market: SyntheticMarket, two_year_sessions: list[date], calendar: TradingCalendar
) -> None:
    # Arrange
    articles, links = market.news(two_year_sessions)

    # Act
    late = [
        row["article_id"]
        for row in articles.iter_rows(named=True)
        if not (calendar.session_open(row["session_date"]).replace(hour=0, minute=0)
                < row["published_at"] <= calendar.session_close(row["session_date"]))
    ]

    # Assert
    assert late == []
    assert articles["article_id"].is_unique().all()
    assert articles["article_id"][0].startswith("SYN-NEWS-2015")
    assert set(links["article_id"]) == set(articles["article_id"])
    assert links.select(pl.struct("article_id", "instrument_id").is_unique().all()).item()
    assert set(links["relevance"]) <= {1.0, 0.3}
    assert links.filter(pl.col("relevance") == 1.0).height == articles.height


def test_earnings_calls_with_two_years_hold_one_call_per_listed_instrument_per_quarter(
    market: SyntheticMarket, two_year_sessions: list[date]
) -> None:
    # Arrange
    calls = market.earnings_calls(two_year_sessions)
    instruments = market.reference().instruments

    # Act
    per_quarter = calls.group_by("instrument_id", "fiscal_period").len()
    always_listed = instruments.filter(
        pl.col("listing_date") == HISTORY_START,
        pl.col("delisting_date").is_null() | (pl.col("delisting_date") > two_year_sessions[-1]),
    )["instrument_id"]
    full = calls.filter(pl.col("instrument_id").is_in(always_listed.implode()))

    # Assert
    assert per_quarter["len"].max() == 1
    assert calls["call_id"].is_unique().all()
    assert full.height == always_listed.len() * 8
    assert set(full["fiscal_period"]) == {f"{y}Q{q}" for y, q in [(2014, 4), *((2015, q) for q in range(1, 5)), (2016, 1), (2016, 2), (2016, 3)]}
    assert calls["eps_consensus"].null_count() == 0 and calls["eps_actual"].null_count() == 0


def test_filings_with_two_years_have_periodic_reports_and_some_8ks(market: SyntheticMarket, two_year_sessions: list[date]) -> None:
    # Arrange / Act
    filings = market.filings(two_year_sessions)
    counts = dict(filings.group_by("filing_type").len().iter_rows())

    # Assert
    assert filings["filing_id"].is_unique().all()
    assert set(counts) == {"10-Q", "10-K", "8-K"}
    assert counts["10-Q"] > 2 * counts["10-K"]
    assert filings["issuer_id"].str.starts_with("SYN-ISS-").all()


def test_macro_events_with_one_year_have_monthly_cpi_nfp_and_eight_fomc(market: SyntheticMarket, calendar: TradingCalendar) -> None:
    # Arrange
    sessions = calendar.sessions(date(2016, 1, 1), date(2016, 12, 31))

    # Act
    events = market.macro_events(sessions)
    counts = dict(events.group_by("event_type").len().iter_rows())

    # Assert
    assert counts == {"CPI": 12, "NFP": 12, "FOMC": 8}
    assert set(events["region"]) == {"US"}
    cpi = events.filter(pl.col("event_type") == "CPI").sort("event_at")
    assert cpi["previous"].to_list()[1:] == cpi["actual"].to_list()[:-1]
    assert events["event_id"].is_unique().all()


# ---------------------------------------------------------------- scale
def test_prices_with_2000_instruments_for_60_sessions_have_2000_distinct_tickers(calendar: TradingCalendar) -> None:
    # Arrange
    start = date(2024, 1, 2)
    sessions = calendar.sessions(start, calendar.session_offset(start, 59))
    market = SyntheticMarket(SyntheticMarketConfig(n_instruments=2000, history_start=start, seed=1), calendar)

    # Act
    prices = market.prices(sessions).frame
    tickers = market.reference().instruments["ticker"]

    # Assert
    assert len(sessions) == 60
    assert tickers.n_unique() == tickers.len() >= 2000
    assert prices["instrument_id"].n_unique() > 1800
    assert prices.group_by("session_date").len().height == 60
