"""Ingestion service: build a market's providers from config and fetch stamped, typed frames.

The Dagster assets call these functions and hand the frames to the warehouse; nothing here
knows about Dagster.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import polars as pl

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config.home import resolve_under_home
from prometheus_lib.config.models import MarketConfig, PlatformConfig
from prometheus_lib.data.providers import (
    EventDataProvider,
    LoadResult,
    MarketDataProvider,
    empty_frame,
    stamp,
)
from prometheus_lib.errors import ConfigError

EVENT_TABLES = ("news_articles", "news_links", "filings", "earnings_calls", "macro_events")


@functools.lru_cache(maxsize=16)
def market_calendar(market: MarketConfig) -> TradingCalendar:
    """Return the trading calendar of ``market`` with its configured daily-cycle windows."""
    return TradingCalendar(
        market.calendar,
        pre_open=timedelta(minutes=market.pre_open_minutes),
        post_close=timedelta(minutes=market.post_close_minutes),
        start=min(market.history_start, date(2000, 1, 3)),
    )


@functools.lru_cache(maxsize=16)
def market_provider(market: MarketConfig) -> MarketDataProvider:
    """Build (once per process) the price provider configured for ``market``.

    Raises
    ------
    ConfigError
        If the market's data source cannot be built.
    """
    calendar = market_calendar(market)
    src = market.data_source
    if src.kind == "synthetic":
        from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig

        cfg = src.synthetic or SyntheticMarketConfig(
            market_id=market.market_id, currency=market.currency, calendar_code=market.calendar,
            history_start=market.history_start,
        )
        if cfg.market_id != market.market_id or cfg.calendar_code != market.calendar:
            raise ConfigError(
                f"markets[{market.market_id}].data_source.synthetic: market_id/calendar_code "
                f"({cfg.market_id}/{cfg.calendar_code}) must match the market ({market.market_id}/{market.calendar})"
            )
        return SyntheticMarket(cfg, calendar)
    if src.kind == "file":
        from prometheus_lib.data.file_import import FilePriceProvider

        paths = [str(resolve_under_home(p)) for p in src.paths]
        master = str(resolve_under_home(src.instrument_master)) if src.instrument_master else None
        return FilePriceProvider(paths, calendar, market.market_id, currency=market.currency, instrument_master=master)
    from prometheus_lib.data.yfinance_provider import YFinanceProvider

    return YFinanceProvider(list(src.tickers), calendar, market.market_id, currency=market.currency)


def event_provider(market: MarketConfig) -> EventDataProvider | None:
    """Return the text/event provider of ``market``, or None when its source has none."""
    provider = market_provider(market)
    return provider if isinstance(provider, EventDataProvider) else None


def utc_now() -> datetime:
    """The ingestion clock (UTC)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class PriceIngest:
    """Stamped ``prices_daily`` rows and ``quarantine_rows`` for one session range."""

    prices: pl.DataFrame
    quarantine: pl.DataFrame
    source: str
    source_files: tuple[str, ...]


def ingest_prices(provider: MarketDataProvider, sessions: Sequence[date], now: datetime | None = None) -> PriceIngest:
    """Fetch prices for ``sessions`` and stamp them (and their quarantine) for the warehouse."""
    now = now or utc_now()
    result: LoadResult = provider.prices(sorted(sessions))
    return PriceIngest(
        prices=stamp(result.frame, "prices_daily", now),
        quarantine=stamp(result.quarantine, "quarantine_rows", now),
        source=provider.source,
        source_files=result.source_files,
    )


def ingest_events(provider: EventDataProvider | None, table: str, sessions: Sequence[date], now: datetime | None = None) -> pl.DataFrame:
    """Fetch one event table (news_articles, news_links, filings, ...) for ``sessions``, stamped."""
    now = now or utc_now()
    if table not in EVENT_TABLES:
        raise ValueError(f"table must be one of {EVENT_TABLES}, was {table!r}")
    sessions = sorted(sessions)
    if provider is None:
        frame = empty_frame(table)
    elif table in ("news_articles", "news_links"):
        articles, links = provider.news(sessions)
        frame = articles if table == "news_articles" else links
    else:
        frame = getattr(provider, table)(sessions)
    return stamp(frame, table, now)


def ingest_corporate_actions(provider: MarketDataProvider, sessions: Sequence[date], now: datetime | None = None) -> pl.DataFrame:
    """Fetch the ``corporate_actions`` rows (splits, dividends, delistings) of ``sessions``, stamped.

    A provider without a ``corporate_actions(sessions)`` method has none: the frame is empty.
    """
    now = now or utc_now()
    fetch = getattr(provider, "corporate_actions", None)
    frame = fetch(sorted(sessions)) if fetch is not None else empty_frame("corporate_actions")
    return stamp(frame, "corporate_actions", now)


def reference_frames(config: PlatformConfig) -> dict[str, pl.DataFrame]:
    """Return the config-driven reference tables: markets, strategies, portfolios."""
    from prometheus_lib.storage.catalog import get_table

    markets = pl.DataFrame(
        [
            {
                "market_id": m.market_id, "name": m.name, "calendar_code": m.calendar,
                "timezone": str(market_calendar(m).timezone), "currency": m.currency,
                "asset_class": m.asset_class, "region": m.region,
                "pre_open_minutes": m.pre_open_minutes, "post_close_minutes": m.post_close_minutes,
                "is_primary": m.market_id == config.primary_market,
            }
            for m in config.markets
        ],
        schema=get_table("markets").polars_schema,
    )
    strategies = pl.DataFrame(
        [
            {
                "strategy_id": s.strategy_id, "name": s.name, "market_id": s.market_id,
                "description": s.description, "config_json": s.model_dump_json(), "config_hash": s.config_hash(),
            }
            for s in config.strategies
        ],
        schema=get_table("strategies").polars_schema,
    )
    portfolios = pl.DataFrame(
        [
            {
                "portfolio_id": p.portfolio_id, "strategy_id": s.strategy_id, "name": p.name,
                "base_currency": p.base_currency, "initial_capital": p.initial_capital, "mode": p.mode,
            }
            for s in config.strategies
            for p in s.portfolios
        ],
        schema=get_table("portfolios").polars_schema,
    )
    return {"markets": markets, "strategies": strategies, "portfolios": portfolios}
