"""Ingestion service: build a market's providers from config and fetch stamped, typed frames.

The Dagster assets call these functions and hand the frames to the warehouse; nothing here
knows about Dagster.

Validate before replacing: a write replaces a partition (or a reference table) only after the
new frame passed the blocking rules here (:func:`gate_prices`, :func:`gate_not_emptied`,
:func:`gate_reference`), run in memory before anything is handed to the warehouse; a failure
raises :class:`~prometheus_lib.errors.DataValidationError` naming the market, sessions, table
and rules, and the stored rows stay as they were. A source that yields nothing for a range (or
an instrument) that has data is such a failure unless the caller allows it (``allow_empty``).
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
from prometheus_lib.data import quality
from prometheus_lib.data.providers import (
    EventDataProvider,
    InputLimits,
    LoadResult,
    MarketDataProvider,
    ReferenceData,
    empty_frame,
    stamp,
)
from prometheus_lib.errors import ConfigError, DataValidationError
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.warehouse import Warehouse

# How a run says that an empty (or shrunken) source may replace stored rows.
ALLOW_EMPTY_HINT = "if that is intended, run again with --allow-empty (run tag prometheus/allow_empty=1)"

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


def market_limits(market: MarketConfig) -> InputLimits:
    """The input bounds of ``market`` (its ``data_limits``)."""
    d = market.data_limits
    return InputLimits(min_price=d.min_price, max_price=d.max_price, max_daily_move=d.max_daily_move,
                       max_identifier_length=d.max_identifier_length, max_line_bytes=d.max_line_bytes)


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
        return FilePriceProvider(paths, calendar, market.market_id, currency=market.currency, instrument_master=master,
                                 limits=market_limits(market))
    from prometheus_lib.data.yfinance_provider import YFinanceProvider

    return YFinanceProvider(list(src.tickers), calendar, market.market_id, currency=market.currency,
                            limits=market_limits(market))


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


# ------------------------------------------------------------------ validate before replacing
@dataclass(frozen=True, slots=True)
class StoredRange:
    """What the warehouse holds for a table's range and market: rows, and the distinct keys."""

    rows: int
    keys: tuple[str, ...] = ()


def stored_range(wh: Warehouse, table: str, market_id: str, start: date | None = None, end: date | None = None,
                 key: str | None = "instrument_id") -> StoredRange:
    """Count ``table``'s rows of ``market_id`` (in ``start..end`` when partitioned) and list ``key``'s values."""
    t = get_table(table)
    ph = wh.placeholder
    where, params = f"market_id = {ph}", [market_id]
    if start is not None and end is not None:
        where += f" AND {t.partition_column} BETWEEN {ph} AND {ph}"
        params += [start, end]
    rows = int(wh.query(f"SELECT count(*) AS n FROM {t.qualified_name} WHERE {where}", params)["n"][0])
    keys: tuple[str, ...] = ()
    if key is not None and rows:
        keys = tuple(sorted(wh.query(f"SELECT DISTINCT {key} AS k FROM {t.qualified_name} WHERE {where}",
                                     params)["k"].to_list()))
    return StoredRange(rows, keys)


def _raise_if_failed(outcomes: Sequence[quality.CheckOutcome], names: Sequence[str], what: str) -> None:
    failed = [(n, o) for n, o in zip(names, outcomes, strict=True) if not o.passed and o.severity is quality.Severity.ERROR]
    if not failed:
        return
    shown = ("missing_sessions", "non_session_dates", "examples")
    detail = "; ".join(f"rule {n!r} failed: {o.description}"
                       + "".join(f", {k} {o.metadata[k][:3]}" for k in shown if o.metadata.get(k))
                       for n, o in failed)
    hint = f"; {ALLOW_EMPTY_HINT}" if any(n == "not_emptied" for n, _ in failed) else ""
    raise DataValidationError(f"{what}: not written, the stored rows are unchanged: {detail}{hint}")


def _what(market_id: str, table: str, sessions: Sequence[date]) -> str:
    return f"{market_id} {table} for {len(sessions)} sessions {min(sessions)}..{max(sessions)}"


def gate_prices(
    batch: PriceIngest,
    *,
    market_id: str,
    calendar: TradingCalendar,
    sessions: Sequence[date],
    limits: InputLimits,
    stored: StoredRange,
    allow_empty: bool = False,
) -> dict[str, quality.CheckOutcome]:
    """Run the blocking (ERROR) rules on a price batch before it replaces ``sessions``' partition.

    The rules: ``not_emptied`` (the source yields rows for the range and for every instrument
    that has stored rows there, unless ``allow_empty``), ``schema``, ``unique_key``,
    ``sessions`` (every session has rows, none on a non-session; waived for an allowed empty
    batch), ``ohlc_consistency`` and ``price_bounds`` (finite, within the market's plausible
    range). The same rules run again as asset checks on what was stored.

    Returns
    -------
    dict[str, CheckOutcome]
        The outcome of each rule, all passed.

    Raises
    ------
    DataValidationError
        If a rule failed: the message names the market, the sessions, the table and each
        failed rule with its description and examples.
    """
    frame = batch.prices
    start, end = min(sessions), max(sessions)
    outcomes = {"not_emptied": quality.check_not_emptied(
        "prices_daily", frame, stored.rows, start, end, allow_empty, key="instrument_id", stored_keys=stored.keys)}
    if not (frame.is_empty() and allow_empty):
        outcomes["schema"] = quality.check_schema("prices_daily", frame)
        outcomes["unique_key"] = quality.check_unique_key("prices_daily", frame)
        outcomes["sessions"] = quality.check_sessions(frame, calendar, start, end)
        outcomes["ohlc_consistency"] = quality.check_ohlc(frame)
        outcomes["price_bounds"] = quality.check_price_bounds(frame, limits.min_price, limits.max_price)
    _raise_if_failed(list(outcomes.values()), list(outcomes), _what(market_id, "prices_daily", sessions))
    return outcomes


def gate_not_emptied(table: str, frame: pl.DataFrame, *, market_id: str, sessions: Sequence[date],
                     stored: StoredRange, allow_empty: bool = False) -> quality.CheckOutcome:
    """Refuse (DataValidationError) an empty ``frame`` for a range where ``table`` has rows, unless allowed."""
    outcome = quality.check_not_emptied(table, frame, stored.rows, min(sessions), max(sessions), allow_empty)
    _raise_if_failed([outcome], ["not_emptied"], _what(market_id, table, sessions))
    return outcome


def gate_reference(reference: ReferenceData, *, market_id: str, stored: StoredRange, priced: Sequence[str],
                   allow_empty: bool = False) -> quality.CheckOutcome:
    """Refuse a reference (issuers, instruments) that would drop what the warehouse still uses.

    ``stored`` is the market's stored instruments, ``priced`` the instrument ids that have
    rows in ``prices_daily``. An empty reference over stored instruments, or one without an
    instrument that still has prices, fails (DataValidationError) unless ``allow_empty``.
    """
    instruments = reference.instruments
    ids = set(instruments["instrument_id"].to_list())
    dropped = sorted(i for i in priced if i not in ids)
    emptied = instruments.is_empty() and stored.rows > 0
    meta = {"instruments_new": instruments.height, "instruments_stored": stored.rows,
            "dropped_with_prices": dropped[:10], "allow_empty": allow_empty}
    if (emptied or dropped) and not allow_empty:
        what = (f"the source yields no instruments, where the warehouse holds {stored.rows}" if emptied else
                f"the source drops {len(dropped)} instruments that still have prices "
                f"({', '.join(dropped[:5])}{', ...' if len(dropped) > 5 else ''})")
        outcome = quality.CheckOutcome(False, quality.Severity.ERROR, what, meta)
    else:
        outcome = quality.CheckOutcome(True, quality.Severity.ERROR,
                                       f"{instruments.height} instruments, none with prices dropped", meta)
    _raise_if_failed([outcome], ["not_emptied"], f"{market_id} issuers and instruments")
    return outcome


# Panels computed from prices, and how a row of each depends on them: on the instrument's price
# row of its session, or on the market having prices that session.
PRICE_PANELS: dict[str, str] = {
    "returns_daily": "instrument",
    "volatility_daily": "instrument",
    "instrument_factors_daily": "instrument",
    "factors_daily": "session",
    "correlation_panels": "session",
}


def prune_orphaned_panels(wh: Warehouse, market_id: str, start: date, end: date) -> dict[str, int]:
    """Delete ``market_id``'s panel rows in ``start..end`` whose price inputs are gone.

    Run inside the transaction of a ``prices_daily`` write (see the warehouse IO manager): a
    panel row never outlives the price row of its instrument and session (instrument panels) or
    the market's prices of its session (market-wide panels). Rows after ``end`` whose look-back
    read the removed prices are not touched: rebuild the panels over the range to refresh them.

    Returns
    -------
    dict[str, int]
        Rows deleted per panel table (only tables with deletions).
    """
    ph = wh.placeholder
    prices = get_table("prices_daily").qualified_name
    deleted: dict[str, int] = {}
    for table, grain in PRICE_PANELS.items():
        t = get_table(table)
        match = "p.instrument_id = x.instrument_id AND " if grain == "instrument" else ""
        where = (f"x.market_id = {ph} AND x.session_date BETWEEN {ph} AND {ph} AND NOT EXISTS ("
                 f"SELECT 1 FROM {prices} AS p WHERE {match}p.session_date = x.session_date "
                 f"AND p.market_id = x.market_id)")
        params = [market_id, start, end]
        n = int(wh.query(f"SELECT count(*) AS n FROM {t.qualified_name} AS x WHERE {where}", params)["n"][0])
        if n:
            wh.execute(f"DELETE FROM {t.qualified_name} AS x WHERE {where}", params)
            deleted[table] = n
    return deleted


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
