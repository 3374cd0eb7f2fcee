"""Daily prices from Yahoo Finance through the optional ``yfinance`` package.

``yfinance.download`` returns a pandas frame indexed by date with two column levels (ticker,
field). :func:`yfinance_frame_to_long` turns it into long rows and the rows then go through
the same validation and quarantine as files (:func:`~prometheus_lib.data.file_import.validate_price_rows`).
Install the extra with ``pip install prometheus[yfinance]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.file_import import derive_reference, to_prices_daily, validate_price_rows
from prometheus_lib.data.providers import QUARANTINE_SCHEMA, InputLimits, LoadResult, ReferenceData, empty_frame
from prometheus_lib.errors import ConfigError, ProviderError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

# yfinance field names, mapped to the long-format columns validate_price_rows reads.
YFINANCE_FIELDS = {
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adjusted_close",
    "Volume": "volume",
}

DownloadFunction = Callable[..., "pd.DataFrame"]


def yfinance_frame_to_long(frame: pd.DataFrame) -> pl.DataFrame:
    """Turn a ``yfinance.download`` frame into long rows, one per ticker per date.

    Accepts columns grouped by ticker (level 0 ticker, level 1 field, as with
    ``group_by="ticker"``) or by field (level 0 field). Rows whose fields are all missing are
    dropped: yfinance aligns every ticker on the union of dates, so a ticker with no data on
    a date (not listed yet, or absent from the reply) shows up as an all-NaN row that Yahoo
    never sent. A row with some fields missing is kept and left to validation.

    Returns
    -------
    polars.DataFrame
        Columns ``date, ticker, open, high, low, close, adjusted_close, volume``, sorted by
        date then ticker.

    Raises
    ------
    ProviderError
        If the frame does not have the (ticker, field) column structure.
    """
    import pandas as pd

    columns_out = ["date", "ticker", *YFINANCE_FIELDS.values()]
    if frame is None or frame.empty:
        return pl.DataFrame(schema={"date": pl.Date, "ticker": pl.String, **{c: pl.Float64 for c in columns_out[2:]}})
    if not isinstance(frame.columns, pd.MultiIndex) or frame.columns.nlevels != 2:
        raise ProviderError(
            f"yfinance frame must have two column levels (ticker, field), had columns {list(frame.columns)[:8]}"
        )
    level0 = {str(v) for v in frame.columns.get_level_values(0)}
    ticker_level = 1 if level0 <= set(YFINANCE_FIELDS) else 0
    field_level = 1 - ticker_level
    fields = {str(v) for v in frame.columns.get_level_values(field_level)}
    unknown = fields - set(YFINANCE_FIELDS) - {"Dividends", "Stock Splits", "Capital Gains", "Repaired?"}
    if "Close" not in fields or unknown:
        raise ProviderError(
            f"yfinance frame fields must include 'Close' and be among {list(YFINANCE_FIELDS)}, "
            f"were {sorted(fields)}"
        )
    long = frame.stack(level=ticker_level, future_stack=True)
    long.index = long.index.set_names(["date", "ticker"])
    long = long.reset_index()
    long.columns = [str(c) for c in long.columns]
    present = [f for f in YFINANCE_FIELDS if f in long.columns]
    long = long.dropna(subset=present, how="all")
    dates = pd.to_datetime(long["date"])
    if getattr(dates.dt, "tz", None) is not None:
        # Keep the exchange-local date: converting to UTC would move Asian sessions a day back.
        dates = dates.dt.tz_localize(None)
    out = pl.DataFrame(
        {
            "date": pl.Series(dates.dt.date.tolist(), dtype=pl.Date),
            "ticker": pl.Series([str(t) for t in long["ticker"]], dtype=pl.String),
            **{
                name: pl.Series(
                    pd.to_numeric(long[field], errors="coerce").astype("float64").to_numpy()
                    if field in long.columns else [None] * len(long),
                    dtype=pl.Float64,
                    nan_to_null=False,
                )
                for field, name in YFINANCE_FIELDS.items()
            },
        }
    )
    return out.sort("date", "ticker").select(columns_out)


# The arguments every download is made with: unadjusted OHLC plus "Adj Close", one column
# group per ticker, no dividend/split columns, no progress bar on stdout.
DOWNLOAD_OPTIONS: dict[str, Any] = {
    "auto_adjust": False,
    "group_by": "ticker",
    "progress": False,
    "actions": False,
}


def _yfinance_download() -> DownloadFunction:
    try:
        import yfinance
    except ImportError as exc:
        raise ProviderError(
            "the yfinance provider needs the optional 'yfinance' package; install it with "
            "`pip install prometheus[yfinance]`"
        ) from exc
    return yfinance.download


class YFinanceProvider:
    """Daily prices for a fixed list of tickers from Yahoo Finance.

    Parameters
    ----------
    tickers
        Yahoo tickers (``"AAPL"``, ``"7203.T"``); stored upper-cased, as Yahoo answers.
    calendar
        The market's calendar; rows on non-sessions are quarantined.
    market_id
        The market the tickers belong to.
    currency
        Currency of the prices.
    download
        Called like ``yfinance.download(tickers, start=..., end=..., **DOWNLOAD_OPTIONS)``
        (ISO dates, ``end`` exclusive) and returning a frame shaped like its answer; defaults
        to ``yfinance.download``, imported when first needed. Tests pass a function returning
        a recorded response.

    Raises
    ------
    ConfigError
        If ``tickers`` is empty, repeats a ticker or holds a non-string.
    """

    source = "yfinance"

    def __init__(
        self,
        tickers: Sequence[str],
        calendar: TradingCalendar,
        market_id: str,
        currency: str = "USD",
        download: DownloadFunction | None = None,
        limits: InputLimits | None = None,
    ) -> None:
        if isinstance(tickers, str):
            tickers = [tickers]
        bad = [t for t in tickers if not isinstance(t, str) or not t.strip()]
        if not tickers or bad:
            raise ConfigError(f"tickers must be a non-empty list of ticker strings, was {list(tickers)!r}")
        normalised = [t.strip().upper() for t in tickers]
        dups = sorted({t for t in normalised if normalised.count(t) > 1})
        if dups:
            raise ConfigError(f"tickers must be unique, repeated: {dups}")
        self.tickers = tuple(normalised)
        self.calendar = calendar
        self.market_id = market_id
        self.currency = currency
        self._download = download
        self.limits = limits or InputLimits()

    def __repr__(self) -> str:
        return f"YFinanceProvider({list(self.tickers)!r}, market_id={self.market_id!r})"

    def source_file(self, start: date, end: date) -> str:
        """Return the quarantine ``source_file`` for one download (market and range included,
        so line numbers of different downloads never share a key)."""
        return f"yfinance:download?market={self.market_id}&start={start.isoformat()}&end={end.isoformat()}"

    def reference(self) -> ReferenceData:
        """Return one instrument and issuer per ticker (Yahoo metadata is not fetched)."""
        return derive_reference(self.tickers, self.market_id, self.currency)

    def prices(self, sessions: Sequence[date]) -> LoadResult:
        """Download and validate ``prices_daily`` rows for exactly ``sessions``.

        Raises
        ------
        ProviderError
            If yfinance is missing, the download fails or returns nothing.
        """
        wanted = sorted(set(sessions))
        if not wanted:
            return LoadResult(empty_frame("prices_daily"), pl.DataFrame(schema=QUARANTINE_SCHEMA), ())
        start, end = wanted[0], wanted[-1] + timedelta(days=1)
        source_file = self.source_file(start, end)
        download = self._download or _yfinance_download()
        try:
            raw: Any = download(list(self.tickers), start=start.isoformat(), end=end.isoformat(), **DOWNLOAD_OPTIONS)
        except Exception as exc:  # yfinance raises many kinds; keep the cause attached
            raise ProviderError(
                f"yfinance download of {list(self.tickers)} from {start} to {end} (exclusive) failed: {exc}"
            ) from exc
        if raw is None or getattr(raw, "empty", True):
            raise ProviderError(
                f"yfinance returned no rows for {list(self.tickers)} from {start} to {end} (exclusive)"
            )
        long = yfinance_frame_to_long(raw)
        absent = sorted(set(self.tickers) - set(long["ticker"].unique().to_list()))
        if absent:
            logger.warning("yfinance returned no rows for %s between %s and %s", absent, start, end)
        valid, quarantine = validate_price_rows(long, source_file, self.calendar, self.market_id, self.tickers,
                                                limits=self.limits)
        session_series = pl.Series(wanted, dtype=pl.Date).implode()
        frame = to_prices_daily(
            valid.filter(pl.col("session_date").is_in(session_series)), self.market_id, self.currency, self.source
        )
        return LoadResult(frame=frame, quarantine=quarantine, source_files=(source_file,))


__all__ = ["DOWNLOAD_OPTIONS", "YFINANCE_FIELDS", "YFinanceProvider", "yfinance_frame_to_long"]
