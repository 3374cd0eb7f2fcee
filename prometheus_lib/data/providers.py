"""The contract every market data source fulfils.

A provider turns some outside source (the synthetic market, CSV/Parquet files, yfinance) into
frames shaped like the catalogue tables (``prometheus_lib.storage.catalog``), minus the
bookkeeping columns the ingestion layer stamps (``ingested_at``, ``quarantined_at``). Rows a
provider rejects are never dropped: they come back in ``LoadResult.quarantine``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

import polars as pl

from prometheus_lib.storage.catalog import get_table

# Columns stamped by the ingestion layer, not by providers.
STAMP_COLUMNS = ("ingested_at", "quarantined_at")


def provider_schema(table: str) -> dict[str, pl.DataType]:
    """Return the polars schema a provider's frame for ``table`` must have (no stamp columns)."""
    return {k: v for k, v in get_table(table).polars_schema.items() if k not in STAMP_COLUMNS}


def empty_frame(table: str) -> pl.DataFrame:
    """Return an empty provider frame for ``table``."""
    return pl.DataFrame(schema=provider_schema(table))


QUARANTINE_SCHEMA = provider_schema("quarantine_rows")


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Bounds on untrusted input rows, per market (``MarketConfig.data_limits`` in the configs).

    Attributes
    ----------
    min_price, max_price
        The plausible range of every price (open, high, low, close, adjusted close) in the
        market's currency. A row with a price outside it, or not finite, is quarantined by the
        importers, and a provider frame holding one is refused before it is written.
    max_daily_move
        Relative jump limit of the ``price_jumps`` check (WARN, never a rejection): an adjusted
        close above ``(1 + max_daily_move)`` or below ``1 / (1 + max_daily_move)`` times the
        instrument's previous close is flagged.
    max_identifier_length
        Longest ticker accepted; a longer one is quarantined, as is one with a control character.
    max_line_bytes
        Longest CSV line (record) read; a longer one is quarantined by its line number and
        skipped without being held in memory.
    """

    min_price: float = 1e-6
    max_price: float = 1e8
    max_daily_move: float = 1.5
    max_identifier_length: int = 32
    max_line_bytes: int = 65_536

    def __post_init__(self) -> None:
        if not (0 < self.min_price < self.max_price < float("inf")):
            raise ValueError(f"need 0 < min_price < max_price < inf, were {self.min_price} and {self.max_price}")
        if not self.max_daily_move > 0:
            raise ValueError(f"max_daily_move must be > 0, was {self.max_daily_move}")
        if self.max_identifier_length < 1 or self.max_line_bytes < 256:
            raise ValueError("max_identifier_length must be >= 1 and max_line_bytes >= 256")


def quarantine_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Build a quarantine frame from dicts with the ``quarantine_rows`` columns.

    ``raw_row`` may be a dict (serialised to JSON) or a JSON string.
    """
    normalised = []
    for r in rows:
        r = dict(r)
        raw = r.get("raw_row")
        if raw is not None and not isinstance(raw, str):
            r["raw_row"] = json.dumps(raw, default=str, sort_keys=True)
        normalised.append({k: r.get(k) for k in QUARANTINE_SCHEMA})
    return pl.DataFrame(normalised, schema=QUARANTINE_SCHEMA, orient="row") if normalised else pl.DataFrame(schema=QUARANTINE_SCHEMA)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Valid rows for one table plus the rows rejected on the way, never silently dropped."""

    frame: pl.DataFrame
    quarantine: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=QUARANTINE_SCHEMA))
    source_files: tuple[str, ...] = ()

    @property
    def rejected(self) -> int:
        """Number of quarantined rows."""
        return self.quarantine.height


@dataclass(frozen=True, slots=True)
class ReferenceData:
    """Issuers and instruments a provider knows about (runtime.issuers / runtime.instruments)."""

    issuers: pl.DataFrame
    instruments: pl.DataFrame


@runtime_checkable
class MarketDataProvider(Protocol):
    """Daily prices and reference data for one market."""

    source: str
    market_id: str

    def reference(self) -> ReferenceData:
        """Return the issuers and instruments of the market."""
        ...

    def prices(self, sessions: Sequence[date]) -> LoadResult:
        """Return ``prices_daily`` rows for exactly ``sessions`` (sorted trading sessions)."""
        ...


@runtime_checkable
class EventDataProvider(Protocol):
    """Text and event data for one market: news, filings, earnings calls, macro releases."""

    source: str
    market_id: str

    def news(self, sessions: Sequence[date]) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Return ``(news_articles, news_links)`` frames for ``sessions``."""
        ...

    def filings(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Return ``filings`` rows for ``sessions``."""
        ...

    def earnings_calls(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Return ``earnings_calls`` rows for ``sessions``."""
        ...

    def macro_events(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Return ``macro_events`` rows for ``sessions``."""
        ...


def stamp(frame: pl.DataFrame, table: str, now: datetime) -> pl.DataFrame:
    """Add the ingestion-layer stamp columns of ``table`` and order columns as the catalogue does."""
    t = get_table(table)
    out = frame
    for col in STAMP_COLUMNS:
        if col in t.column_names and col not in out.columns:
            out = out.with_columns(pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias(col))
    return out.select(t.column_names)
