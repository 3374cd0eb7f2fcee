"""Daily prices from CSV and Parquet files, validated row by row with pandera.

Files are in long format, one row per ticker per session::

    date,ticker,open,high,low,close,volume
    2024-01-02,AAPL,187.15,188.44,183.89,185.64,82488700

Header names are case-insensitive; ``date``, ``ticker`` and ``close`` are required, the other
columns are optional (close-only files are allowed). An optional instrument master (CSV or
Parquet, one row per ticker) supplies reference data.

Every row is checked by one pandera schema (:func:`price_row_schema`). A row that fails any
rule is kept out of the loaded frame and comes back as a quarantine row naming the file, the
line, the rule, the column and the bad value: bad rows never vanish and never abort a load. A
problem with a whole file (unreadable, unsupported, missing a required column, a bad header
line) raises :class:`~prometheus_lib.errors.DataValidationError` instead.

Values are bounded (:class:`~prometheus_lib.data.providers.InputLimits`, per market): prices
outside the market's plausible range or not finite, tickers that are too long or hold a control
character are quarantined. CSV files are read as a stream of lines (:func:`read_price_file`):
a line over ``max_line_bytes`` is quarantined by number and skipped without being held in
memory, and a line that is not valid UTF-8 (named with its byte offset), holds a control
character, has the wrong number of fields (a ragged line, an unquoted decimal comma) or an
unterminated quote is quarantined on its own; the other lines load.

:func:`validate_price_rows` is shared by every price provider that starts from an untrusted
long frame (see ``prometheus_lib.data.yfinance_provider``).
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from datetime import date
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.providers import (
    QUARANTINE_SCHEMA,
    InputLimits,
    LoadResult,
    ReferenceData,
    empty_frame,
    provider_schema,
    quarantine_frame,
)
from prometheus_lib.errors import DataValidationError

PRICES_ASSET = "prices_daily"

PRICE_FIELDS = ("open", "high", "low", "close", "adjusted_close")
NUMERIC_FIELDS = (*PRICE_FIELDS, "volume")
REQUIRED_COLUMNS = ("date", "ticker", "close")
INPUT_COLUMNS = ("date", "ticker", *NUMERIC_FIELDS)

# Header spellings accepted for each input column (compared lower-cased, stripped).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "session_date"),
    "ticker": ("ticker", "symbol"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "adjusted_close": ("adjusted_close", "adj_close", "adj close", "adjclose"),
    "volume": ("volume",),
}
_ALIAS_TO_COLUMN = {alias: col for col, aliases in COLUMN_ALIASES.items() for alias in aliases}

# Text cells that mean "no value" in numeric columns.
MISSING_TOKENS = ("", "na", "nan", "null", "none", "n/a", "#n/a")

SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")

# Local calendar date at the start of an ISO date or timestamp ("2024-01-02",
# "2024-01-02 00:00:00-05:00", "2024-01-02T00:00:00Z"); the offset is ignored on purpose so a
# Tokyo timestamp keeps its Tokyo date.
_ISO_DATE = r"^(\d{4}-\d{1,2}-\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?)?$"
_COMPACT_DATE = r"^\d{8}$"

# A quarantine row shows at most this many characters of a cell (the rest is counted): a
# 150 MB cell must not travel into the warehouse, the run's metadata and the checks' events.
MAX_SHOWN_CHARS = 200

# Control characters (C0, DEL, C1, the Unicode line separators): never part of an identifier.
_CONTROL_CHARS = r"[\x00-\x1F\x7F-\x9F\x{2028}\x{2029}]"
# In a CSV record: any C0 control byte but the tab (a CR or LF inside a quoted cell included).
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Every byte but the C0 controls other than tab, LF and CR, and DEL: deleting these from a block
# of whole lines leaves its control bytes (a CR is allowed only in a CRLF line end).
_NOT_CONTROL = bytes(b for b in range(256) if not (b < 0x20 and b not in (0x09, 0x0A, 0x0D)) and b != 0x7F)
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d+,\d+\s*$")
_READ_BLOCK = 1 << 22

_VALID_COLUMNS = ("session_date", "ticker", *NUMERIC_FIELDS, "line_number")
VALID_PRICE_SCHEMA: dict[str, pl.DataType] = {
    "session_date": pl.Date(),
    "ticker": pl.String(),
    **{c: pl.Float64() for c in NUMERIC_FIELDS},
    "line_number": pl.Int64(),
}


# ------------------------------------------------------------------ rules
@dataclass(frozen=True, slots=True)
class _Rule:
    """A row rule: the quarantine reason, the field it names and the columns its value shows."""

    reason: str
    field: str
    value_columns: tuple[str, ...]


def _has(column: str) -> str:
    return f"_has_{column}"




def _rules() -> dict[str, _Rule]:
    rules = [
        _Rule("missing date", "date", ("date",)),
        _Rule("unparseable date", "date", ("date",)),
        _Rule("missing ticker", "ticker", ("ticker",)),
        _Rule("missing close", "close", ("close",)),
        *(_Rule(f"{c} is not a number", c, (c,)) for c in NUMERIC_FIELDS),
        *(_Rule(f"{c} has a decimal comma", c, (c,)) for c in NUMERIC_FIELDS),
        *(_Rule(f"non-finite {c}", c, (c,)) for c in NUMERIC_FIELDS),
        *(_Rule(f"non-positive {c}", c, (c,)) for c in PRICE_FIELDS),
        *(_Rule(f"{c} outside plausible range", c, (c,)) for c in PRICE_FIELDS),
        _Rule("ticker too long", "ticker", ("ticker",)),
        _Rule("control character in ticker", "ticker", ("ticker",)),
        _Rule("negative volume", "volume", ("volume",)),
        _Rule("high < low", "high,low", ("high", "low")),
        _Rule("high < max(open, close)", "high,open,close", ("high", "open", "close")),
        _Rule("low > min(open, close)", "low,open,close", ("low", "open", "close")),
        _Rule("duplicate key", "date,ticker", ("date", "ticker")),
        _Rule("not a session", "date", ("date",)),
        _Rule("unknown ticker", "ticker", ("ticker",)),
    ]
    return {r.reason: r for r in rules}


# Reasons of a whole CSV line rejected before its cells are parsed (:func:`read_price_file`);
# ``field`` is "line" or the column the problem sits in.
LINE_REASONS = (
    "line too long",
    "invalid UTF-8",
    "wrong number of fields",
    "unterminated quote",
    *(f"control character in {c}" for c in INPUT_COLUMNS),
    "control character in line",
)


RULES: dict[str, _Rule] = _rules()


def _frame_check(expr: pl.Expr, reason: str) -> pa.Check:
    # Dataframe-level check: ``expr`` is True for rows that pass; nulls never count as failures
    # here because every "must be present" rule has its own check.
    return pa.Check(lambda data: data.lazyframe.select(expr.fill_null(True)), error=reason, name=reason)


def price_row_schema(
    sessions: Iterable[date] | None = None,
    known_tickers: Iterable[str] | None = None,
    limits: InputLimits | None = None,
) -> pa.DataFrameSchema:
    """Build the pandera schema every parsed price row must satisfy.

    The schema validates the frame :func:`validate_price_rows` builds after parsing: typed
    columns ``session_date, ticker, open, high, low, close, adjusted_close, volume`` plus one
    boolean ``_has_<column>`` per input column telling whether the input cell held a value at
    all (so "missing" and "unparseable" are separate rules). Each check's ``error`` is the
    quarantine reason (a key of :data:`RULES`).

    Parameters
    ----------
    sessions
        The trading sessions dates must belong to; None skips the session rule.
    known_tickers
        The tickers rows may carry; None skips the unknown-ticker rule.
    limits
        The plausible price range and longest ticker; default :class:`InputLimits()`.

    Returns
    -------
    pandera.polars.DataFrameSchema
        The row schema.
    """
    limits = limits or InputLimits()
    price_columns = {
        c: pa.Column(pl.Float64, nullable=True, checks=[pa.Check.gt(0, error=f"non-positive {c}")])
        for c in PRICE_FIELDS
    }
    columns: dict[str, pa.Column] = {
        "session_date": pa.Column(pl.Date, nullable=True),
        "ticker": pa.Column(pl.String, nullable=True),
        **price_columns,
        "volume": pa.Column(pl.Float64, nullable=True, checks=[pa.Check.ge(0, error="negative volume")]),
        **{_has(c): pa.Column(pl.Boolean, nullable=False) for c in INPUT_COLUMNS},
    }
    # Ordering rules look only at prices within the plausible range: a zero, negative, infinite
    # or implausible one already has its own rule, and comparing against it would only repeat
    # that rejection under another name.
    high, low, open_, close = (
        pl.when(pl.col(c).is_between(limits.min_price, limits.max_price)).then(pl.col(c))
        for c in ("high", "low", "open", "close")
    )
    checks = [
        _frame_check(pl.col(_has("date")), "missing date"),
        _frame_check(~pl.col(_has("date")) | pl.col("session_date").is_not_null(), "unparseable date"),
        _frame_check(pl.col("ticker").is_not_null(), "missing ticker"),
        _frame_check(pl.col(_has("close")), "missing close"),
        *(
            _frame_check(~pl.col(_has(c)) | pl.col(c).is_not_null(), f"{c} is not a number")
            for c in NUMERIC_FIELDS
        ),
        # Parsing keeps infinities (NaN is "missing"), so they have a rule of their own.
        *(_frame_check(~pl.col(c).is_infinite(), f"non-finite {c}") for c in NUMERIC_FIELDS),
        # The plausible range applies to finite positive prices (the others have their rule).
        *(
            _frame_check(
                (pl.col(c) <= 0) | pl.col(c).is_infinite() | pl.col(c).is_between(limits.min_price, limits.max_price),
                f"{c} outside plausible range",
            )
            for c in PRICE_FIELDS
        ),
        _frame_check(pl.col("ticker").str.len_chars() <= limits.max_identifier_length, "ticker too long"),
        _frame_check(~pl.col("ticker").str.contains(_CONTROL_CHARS), "control character in ticker"),
        _frame_check(high >= low, "high < low"),
        _frame_check(high >= pl.max_horizontal(open_, close), "high < max(open, close)"),
        _frame_check(low <= pl.min_horizontal(open_, close), "low > min(open, close)"),
        _frame_check(
            pl.col("session_date").is_null()
            | pl.col("ticker").is_null()
            | ~pl.struct("session_date", "ticker").is_duplicated(),
            "duplicate key",
        ),
    ]
    if sessions is not None:
        session_series = pl.Series("sessions", sorted(set(sessions)), dtype=pl.Date)
        checks.append(_frame_check(pl.col("session_date").is_in(session_series.implode()), "not a session"))
    if known_tickers is not None:
        ticker_series = pl.Series("tickers", sorted(set(known_tickers)), dtype=pl.String)
        checks.append(_frame_check(pl.col("ticker").is_in(ticker_series.implode()), "unknown ticker"))
    return pa.DataFrameSchema(columns, checks=checks, strict=False, coerce=False, name="price_rows")


# ------------------------------------------------------------------ parsing
def resolve_columns(columns: Sequence[str], source_file: str) -> dict[str, str]:
    """Map each recognised input column to its header in ``columns`` (case-insensitive).

    Raises
    ------
    DataValidationError
        If a required column is missing or two headers name the same column.
    """
    found: dict[str, str] = {}
    for header in columns:
        canonical = _ALIAS_TO_COLUMN.get(str(header).strip().lower())
        if canonical is None:
            continue
        if canonical in found:
            raise DataValidationError(
                f"{source_file}: headers {found[canonical]!r} and {header!r} both name column "
                f"{canonical!r}; keep one"
            )
        found[canonical] = header
    missing = [c for c in REQUIRED_COLUMNS if c not in found]
    if missing:
        raise DataValidationError(
            f"{source_file}: missing required column(s) {', '.join(missing)}; "
            f"header was {list(columns)}, required {list(REQUIRED_COLUMNS)} (case-insensitive), "
            f"optional {[c for c in INPUT_COLUMNS if c not in REQUIRED_COLUMNS]}"
        )
    return found


def _parse_dates(column: pl.Series, source_file: str) -> tuple[pl.Series, pl.Series]:
    """Return ``(dates, present)`` for a date column of any supported type."""
    name, dtype = column.name, column.dtype
    if dtype == pl.Date:
        return column, column.is_not_null()
    if isinstance(dtype, pl.Datetime):
        # A zoned datetime gives its local date, which is the session date.
        return column.dt.date(), column.is_not_null()
    if dtype == pl.Null:
        return pl.Series(name, [None] * column.len(), dtype=pl.Date), pl.repeat(False, column.len(), eager=True)
    if dtype != pl.String and not dtype.is_integer():
        raise DataValidationError(
            f"{source_file}: column {name!r} has type {dtype}; expected dates, datetimes or ISO date text"
        )
    text = column.cast(pl.String).str.strip_chars()
    present = text.is_not_null() & (text != "")
    dates = text.str.to_date("%Y-%m-%d", strict=False)
    # The common case is plain ISO dates; only the rest pay for the regex.
    retry = (dates.is_null() & present).arg_true()
    if retry.len():
        rest = text.gather(retry)
        iso = rest.str.extract(_ISO_DATE, 1).str.to_date("%Y-%m-%d", strict=False)
        compact = pl.select(
            pl.when(rest.str.contains(_COMPACT_DATE)).then(rest.str.to_date("%Y%m%d", strict=False))
        ).to_series()
        dates = dates.scatter(retry, iso.fill_null(compact))
    return dates.alias(name), present.fill_null(False)


def _check_dtype(header: str, dtype: pl.DataType, canonical: str, source_file: str) -> None:
    if canonical == "ticker":
        ok = not dtype.is_nested()
        expected = "ticker text"
    else:
        ok = dtype in (pl.String, pl.Null) or dtype.is_numeric()
        expected = "numbers or number text"
    if not ok:
        raise DataValidationError(f"{source_file}: column {header!r} has type {dtype}; expected {expected}")


def _parse(frame: pl.DataFrame, columns: dict[str, str], source_file: str) -> pl.DataFrame:
    # Three passes rather than one big expression: each intermediate (stripped text, number) is
    # computed once, which halves the time on a million rows.
    first: list[pl.Expr] = []
    for canonical in INPUT_COLUMNS[1:]:
        header = columns.get(canonical)
        if header is None:
            first.append(pl.lit(None, pl.String if canonical == "ticker" else pl.Float64).alias(canonical))
            continue
        dtype = frame.schema[header]
        _check_dtype(header, dtype, canonical, source_file)
        raw = pl.col(header)
        if canonical == "ticker" or dtype in (pl.String, pl.Null):
            first.append(raw.cast(pl.String).str.strip_chars().alias(canonical))
        else:
            first.append(raw.cast(pl.Float64).alias(canonical))
    stage1 = frame.select(first)

    second: list[pl.Expr] = []
    for canonical in INPUT_COLUMNS[1:]:
        col = pl.col(canonical)
        if canonical == "ticker":
            second += [pl.when(col != "").then(col).alias(canonical), (col.is_not_null() & (col != "")).alias(_has(canonical))]
        elif stage1.schema[canonical] == pl.String:
            second += [
                col.cast(pl.Float64, strict=False).alias(canonical),
                (col.is_not_null() & ~col.str.to_lowercase().is_in(list(MISSING_TOKENS))).alias(_has(canonical)),
            ]
        else:
            second += [col, (col.is_not_null() & ~col.is_nan()).alias(_has(canonical))]
    stage2 = stage1.select(second)

    # NaN counts as missing; infinities are kept for their own rule ("non-finite").
    parsed = stage2.with_columns(pl.when(~pl.col(c).is_nan()).then(pl.col(c)).alias(c) for c in NUMERIC_FIELDS)
    if "date" in columns:
        dates, present = _parse_dates(frame[columns["date"]], source_file)
    else:
        dates, present = pl.Series([None] * frame.height, dtype=pl.Date), pl.repeat(False, frame.height, eager=True)
    return parsed.with_columns(dates.alias("session_date"), present.alias(_has("date"))).select(
        "session_date", pl.exclude("session_date")
    )


def clip_text(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """Return ``text``, or its first ``limit`` characters and how many more there were."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return "NaN"
    return clip_text(value if isinstance(value, str) else str(value))


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN or infinity (PostgreSQL's JSONB rejects them): keep them as text. Long
    # text is clipped (a quarantine row shows a cell, it does not carry it).
    return {
        k: _text(v) if (isinstance(v, float) and not math.isfinite(v)) or isinstance(v, str) else v
        for k, v in row.items()
    }


def _failures(parsed: pl.DataFrame, schema: pa.DataFrameSchema, source_file: str) -> pl.DataFrame:
    """Return ``(index, reason)`` for every failed rule, from pandera's lazy failure cases."""
    # Validation must run in full whatever the process-wide pandera settings say: a disabled
    # validation would silently let bad rows through.
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            schema.validate(parsed, lazy=True)
        except SchemaErrors as exc:
            cases = exc.failure_cases
        else:
            return pl.DataFrame(schema={"index": pl.Int64, "reason": pl.String})
    cases = cases.select(pl.col("index").cast(pl.Int64), pl.col("check").alias("reason"), "column", "failure_case")
    schema_level = cases.filter(pl.col("index").is_null() | ~pl.col("reason").is_in(list(RULES)))
    if schema_level.height:
        # Parsing builds the typed columns itself, so a schema-level failure (wrong dtype, missing
        # column) is a bug in this module, not bad data: fail loudly rather than quarantine.
        first = schema_level.row(0, named=True)
        raise DataValidationError(
            f"{source_file}: parsed price frame failed schema check {first['reason']!r} on column "
            f"{first['column']!r}: {first['failure_case']}"
        )
    return cases.select("index", "reason").unique().sort("index", "reason")


def validate_price_rows(
    frame: pl.DataFrame,
    source_file: str,
    calendar: TradingCalendar,
    market_id: str,
    known_tickers: Iterable[str] | None = None,
    *,
    line_numbers: Sequence[int] | pl.Series | None = None,
    limits: InputLimits | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate long-format price rows and split them into valid rows and quarantine rows.

    Parameters
    ----------
    frame
        Rows as read: columns ``date, ticker, close`` and optionally ``open, high, low,
        adjusted_close, volume`` (headers case-insensitive, aliases in
        :data:`COLUMN_ALIASES`), as text or typed; other columns are ignored but kept in
        ``raw_row``.
    source_file
        Where the rows came from, recorded on each quarantine row.
    calendar
        Dates must be sessions of this calendar.
    market_id
        Market recorded on each quarantine row.
    known_tickers
        If given, rows with any other ticker are rejected ("unknown ticker").
    line_numbers
        Line number of each row in ``source_file``; default 1..n.
    limits
        Plausible price range and longest ticker (default :class:`InputLimits()`).

    Returns
    -------
    tuple[polars.DataFrame, polars.DataFrame]
        ``(valid, quarantine)``. ``valid`` has :data:`VALID_PRICE_SCHEMA` (``adjusted_close``
        falls back to ``close``); ``quarantine`` has one row per (line, failed rule) with the
        ``quarantine_rows`` columns minus ``quarantined_at``. Every input row is in exactly
        one of the two (by line number).

    Raises
    ------
    DataValidationError
        If a required column is missing, a column has a type that cannot hold its values, or
        ``line_numbers`` does not match the rows.
    """
    columns = resolve_columns(frame.columns, source_file)
    if line_numbers is None:
        lines = pl.int_range(1, frame.height + 1, dtype=pl.Int64, eager=True).alias("line_number")
    else:
        lines = pl.Series("line_number", line_numbers, dtype=pl.Int64)
        if lines.len() != frame.height:
            raise DataValidationError(
                f"{source_file}: line_numbers has {lines.len()} entries for {frame.height} rows"
            )
    parsed = _parse(frame, columns, source_file)
    # The calendar's sessions over the dates present; dates outside the calendar's coverage
    # match none of them and are rejected as "not a session".
    dates = parsed["session_date"].drop_nulls()
    lo = max(dates.min(), calendar.first_session) if dates.len() else None
    hi = min(dates.max(), calendar.last_session) if dates.len() else None
    sessions = calendar.sessions(lo, hi) if lo is not None and hi is not None and lo <= hi else []
    limits = limits or InputLimits()
    schema = price_row_schema(sessions, known_tickers, limits)
    failures = _failures(parsed, schema, source_file)

    rejected = failures["index"].unique().sort()
    valid = (
        parsed.with_columns(lines)
        .with_row_index("_index")
        .filter(~pl.col("_index").cast(pl.Int64).is_in(rejected.implode()))
        .select(
            "session_date",
            "ticker",
            *(c for c in NUMERIC_FIELDS if c != "adjusted_close"),
            pl.col("adjusted_close").fill_null(pl.col("close")),
            "line_number",
        )
        .select(_VALID_COLUMNS)
    )
    quarantine = _quarantine_rows(frame, parsed, lines, failures, rejected, columns, source_file, market_id, limits)
    return valid, quarantine


def _quarantine_rows(
    frame: pl.DataFrame,
    parsed: pl.DataFrame,
    lines: pl.Series,
    failures: pl.DataFrame,
    rejected: pl.Series,
    columns: dict[str, str],
    source_file: str,
    market_id: str,
    limits: InputLimits,
) -> pl.DataFrame:
    if rejected.len() == 0:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    raw_rows = frame[rejected].to_dicts()
    session_dates = parsed["session_date"].gather(rejected).to_list()
    line_list = lines.gather(rejected).to_list()
    position = {int(i): k for k, i in enumerate(rejected.to_list())}
    out: list[dict[str, Any]] = []
    for index, reason in failures.iter_rows():
        k = position[index]
        raw = raw_rows[k]
        rule = RULES[reason]
        values = [_text(raw.get(columns[c])) if c in columns else None for c in rule.value_columns]
        if len(values) == 1:
            value = values[0]
        else:
            value = ", ".join(f"{c}={v if v is not None else 'null'}" for c, v in zip(rule.value_columns, values))
        if reason.endswith(" is not a number") and value is not None and _DECIMAL_COMMA.match(value):
            reason = f"{rule.field} has a decimal comma"
            rule = RULES[reason]
        elif reason.endswith(" outside plausible range"):
            value = f"{value} (plausible {limits.min_price:g}..{limits.max_price:g})"
        elif reason == "control character in ticker":
            value = clip_text(ascii(raw.get(columns["ticker"])))
        elif reason == "ticker too long":
            value = f"{value} ({len(str(raw.get(columns['ticker'])))} characters, limit {limits.max_identifier_length})"
        out.append({
            "asset": PRICES_ASSET,
            "source_file": source_file,
            "line_number": line_list[k],
            "reason": reason,
            "field": rule.field,
            "value": value,
            "session_date": session_dates[k],
            "market_id": market_id,
            "raw_row": _json_safe(raw),
        })
    return quarantine_frame(out)


# ------------------------------------------------------------------ provider frames
def to_prices_daily(
    valid: pl.DataFrame,
    market_id: str,
    currency: str,
    source: str,
    instruments: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Turn valid price rows into a ``prices_daily`` provider frame.

    ``instrument_id`` (and ``currency``, where the instrument has one) come from
    ``instruments`` by ticker; without it the ticker is the instrument id.
    """
    out = valid
    if instruments is not None and instruments.height:
        mapping = instruments.select("ticker", pl.col("instrument_id"), pl.col("currency").alias("_currency"))
        out = out.join(mapping, on="ticker", how="left")
    else:
        out = out.with_columns(pl.col("ticker").alias("instrument_id"), pl.lit(None, pl.String).alias("_currency"))
    out = out.with_columns(
        pl.col("instrument_id").fill_null(pl.col("ticker")),
        pl.lit(market_id).alias("market_id"),
        pl.col("_currency").fill_null(pl.lit(currency)).alias("currency"),
        pl.lit(source).alias("source"),
    )
    if "shares_outstanding" not in out.columns:
        out = out.with_columns(pl.lit(None, pl.Float64).alias("shares_outstanding"))
    schema = provider_schema("prices_daily")
    return out.select([pl.col(c).cast(t) for c, t in schema.items()]).sort("session_date", "instrument_id")


def derive_reference(tickers: Iterable[str], market_id: str, currency: str) -> ReferenceData:
    """Build reference data from bare tickers: each ticker its own instrument and issuer.

    Instruments get asset class ``EQUITY``, lot size 1 and status ``ACTIVE``.
    """
    ticks = sorted(set(tickers))
    issuers = pl.DataFrame(
        {
            "issuer_id": ticks,
            "name": ticks,
            "sector": [None] * len(ticks),
            "industry": [None] * len(ticks),
            "country": [None] * len(ticks),
            "market_id": [market_id] * len(ticks),
        },
        schema=provider_schema("issuers"),
    )
    master = pl.DataFrame({"ticker": ticks}, schema={"ticker": pl.String})
    return ReferenceData(issuers=issuers, instruments=_instruments_from_master(master, market_id, currency))


# ------------------------------------------------------------------ instrument master
MASTER_COLUMNS: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "instrument_id": pl.String(),
    "issuer_id": pl.String(),
    "name": pl.String(),
    "issuer_name": pl.String(),
    "sector": pl.String(),
    "industry": pl.String(),
    "country": pl.String(),
    "currency": pl.String(),
    "asset_class": pl.String(),
    "shares_outstanding": pl.Float64(),
    "lot_size": pl.Int32(),
    "listing_date": pl.Date(),
    "delisting_date": pl.Date(),
    "status": pl.String(),
}


def _cast_master_column(frame: pl.DataFrame, col: str, dtype: pl.DataType, source: str, lines: pl.Series) -> pl.Series:
    raw_dtype = frame.schema[col]
    if raw_dtype.is_nested():
        raise DataValidationError(f"{source}: column {col!r} has type {raw_dtype}; expected {dtype}")
    text = pl.col(col).cast(pl.String).str.strip_chars()
    present = text.is_not_null() & (text != "")
    if dtype == pl.String:
        value = pl.when(present).then(text)
    elif dtype == pl.Date:
        value = pl.lit(_parse_dates(frame[col], source)[0])
    else:
        number = pl.col(col).cast(pl.Float64) if raw_dtype.is_numeric() else text.cast(pl.Float64, strict=False)
        number = pl.when(number.is_finite()).then(number)
        if dtype.is_integer():
            number = pl.when(number == number.round(0)).then(number)
        value = number
    out = frame.select(value.cast(dtype).alias(col), (present & value.is_null()).alias("_bad"))
    if out["_bad"].any():
        i = int(out["_bad"].arg_true()[0])
        raise DataValidationError(
            f"{source} line {lines[i]}: field {col!r} must be {dtype}, was {clip_text(repr(frame[col][i]))}"
        )
    return out[col]


def load_instrument_master(master: pl.DataFrame | str | Path, limits: InputLimits | None = None) -> pl.DataFrame:
    """Read and check an instrument master (a frame, or a CSV/Parquet file).

    Returns a frame with every column of :data:`MASTER_COLUMNS` (absent ones null), one row per
    ticker.

    Raises
    ------
    DataValidationError
        If the file cannot be read, has a malformed line (too long, not UTF-8, a control
        character, the wrong number of fields), has no ``ticker`` column, repeats a ticker or
        instrument id, holds an identifier (ticker, instrument_id, issuer_id) that is too long
        or has a control character, or a value of the wrong type (the message names the line
        and field). The master is reference data: one bad line rejects it whole.
    """
    limits = limits or InputLimits()
    if isinstance(master, pl.DataFrame):
        source, frame = "<instrument master frame>", master
        lines = pl.int_range(1, frame.height + 1, dtype=pl.Int64, eager=True)
    else:
        source = str(master)
        frame, lines, rejects = _read_file(Path(master), source, limits)
        if rejects:
            r = rejects[0]
            raise DataValidationError(f"{source} line {r.line_number}: {r.reason} ({r.field}): {r.value}")
    headers: dict[str, str] = {}
    for h in frame.columns:
        key = h.strip().lower()
        if key in headers:
            raise DataValidationError(f"{source}: headers {headers[key]!r} and {h!r} name the same column")
        headers[key] = h
    if "ticker" not in headers:
        raise DataValidationError(
            f"{source}: instrument master has no 'ticker' column; header was {frame.columns}, "
            f"known columns {list(MASTER_COLUMNS)}"
        )
    frame = frame.rename({v: k for k, v in headers.items()})
    cols = [_cast_master_column(frame, c, t, source, lines) if c in frame.columns
            else pl.Series(c, [None] * frame.height, dtype=t) for c, t in MASTER_COLUMNS.items()]
    out = pl.DataFrame(cols)
    missing = out["ticker"].is_null()
    if missing.any():
        i = int(missing.arg_true()[0])
        raise DataValidationError(f"{source} line {lines[i]}: field 'ticker' is empty")
    out = out.with_columns(pl.col("instrument_id").fill_null(pl.col("ticker")))
    for key in ("ticker", "instrument_id", "issuer_id"):
        bad = out.select(
            (pl.col(key).str.len_chars() > limits.max_identifier_length).fill_null(False).alias("long"),
            pl.col(key).str.contains(_CONTROL_CHARS).fill_null(False).alias("control"),
        )
        for flag, what in (("control", "holds a control character"),
                           ("long", f"is longer than {limits.max_identifier_length} characters")):
            if bad[flag].any():
                i = int(bad[flag].arg_true()[0])
                raise DataValidationError(
                    f"{source} line {lines[i]}: {key} {clip_text(ascii(out[key][i]))} {what}"
                )
    for key in ("ticker", "instrument_id"):
        dup = out[key].is_duplicated()
        if dup.any():
            i = int(dup.arg_true()[0])
            raise DataValidationError(
                f"{source} line {lines[i]}: {key} {out[key][i]!r} appears more than once; "
                f"the master has one row per instrument"
            )
    return out


def _instruments_from_master(master: pl.DataFrame, market_id: str, currency: str) -> pl.DataFrame:
    m = master
    for c, t in MASTER_COLUMNS.items():
        if c not in m.columns:
            m = m.with_columns(pl.lit(None, t).alias(c))
    out = m.with_columns(
        pl.col("instrument_id").fill_null(pl.col("ticker")),
        pl.col("issuer_id").fill_null(pl.col("ticker")),
        pl.lit(market_id).alias("market_id"),
        pl.col("asset_class").fill_null(pl.lit("EQUITY")),
        pl.col("currency").fill_null(pl.lit(currency)),
        pl.col("lot_size").fill_null(1),
        pl.col("status").fill_null(
            pl.when(pl.col("delisting_date").is_not_null()).then(pl.lit("DELISTED")).otherwise(pl.lit("ACTIVE"))
        ),
    )
    schema = provider_schema("instruments")
    return out.select([pl.col(c).cast(t) for c, t in schema.items()])


def reference_from_master(master: pl.DataFrame, market_id: str, currency: str) -> ReferenceData:
    """Build issuers and instruments from a checked instrument master.

    An instrument's issuer is ``issuer_id`` if given, else its ticker; the issuer's name is
    ``issuer_name``, else the instrument ``name``, else the ticker.
    """
    instruments = _instruments_from_master(master, market_id, currency)
    issuers = (
        master.with_columns(
            pl.col("issuer_id").fill_null(pl.col("ticker")),
            pl.coalesce("issuer_name", "name", "ticker").alias("_issuer_name"),
        )
        .unique(subset="issuer_id", keep="first", maintain_order=True)
        .select(
            "issuer_id",
            pl.col("_issuer_name").alias("name"),
            "sector",
            "industry",
            "country",
            pl.lit(market_id).alias("market_id"),
        )
    )
    schema = provider_schema("issuers")
    return ReferenceData(issuers=issuers.select([pl.col(c).cast(t) for c, t in schema.items()]), instruments=instruments)


# ------------------------------------------------------------------ files
def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _check_file(path: Path, source: str) -> str:
    suffix = _suffix(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataValidationError(
            f"{source}: unsupported file type {suffix or '(none)'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise DataValidationError(f"{source}: file not found or not a regular file")
    if path.stat().st_size == 0:
        raise DataValidationError(f"{source}: file is empty (0 bytes); expected a header and rows")
    return suffix


def _read_file(path: Path, source: str, limits: InputLimits | None = None) -> tuple[pl.DataFrame, pl.Series, list[LineReject]]:
    """Read a CSV (through :class:`_CsvScanner`) or Parquet file: ``(frame, line numbers, rejected lines)``."""
    suffix = _check_file(path, source)
    limits = limits or InputLimits()
    if suffix.startswith(".csv"):
        return _scan_csv(path, source, limits)
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise DataValidationError(f"{source}: cannot read {suffix} file: {exc}") from exc
    if not frame.columns:
        raise DataValidationError(f"{source}: file has no columns")
    return frame, pl.int_range(1, frame.height + 1, dtype=pl.Int64, eager=True).alias("line_number"), []


@dataclass(frozen=True, slots=True)
class LineReject:
    """A CSV line rejected before its cells were parsed: its number, why, and what it held.

    ``field`` is ``"line"`` or the column the problem sits in; ``date_text`` is the line's date
    cell where it could be found (so the rejection lands in its session's partition), and
    ``text`` the line itself, clipped.
    """

    line_number: int
    reason: str
    field: str
    value: str
    date_text: str | None
    text: str


class _CsvScanner:
    """Splits a CSV byte stream into records and keeps the well-formed ones.

    Fed physical lines (or blocks of them); a record is one physical line, or several while a
    quoted cell is open (an odd number of quotes so far). Each record is checked for length,
    UTF-8, control characters and its number of fields; accepted records are kept as bytes
    (with their line numbers) for polars to parse, rejected ones as :class:`LineReject`.
    Blank lines are skipped but counted. The header (the first non-blank record) must pass
    every check: a bad header rejects the file.
    """

    _FAST_SPLIT = 1 << 16  # a block failing the fast checks is halved down to this size

    def __init__(self, source: str, max_line_bytes: int) -> None:
        self.source = source
        self.cap = max_line_bytes
        self.chunks: list[bytes] = []
        self.runs: list[list[int]] = []  # [first line, count] of accepted records, merged when contiguous
        self.rejects: list[LineReject] = []
        self.header: list[str] | None = None
        self.commas = -1
        self.date_index: int | None = None
        self.rec_line = 0  # first line of the record being assembled (0: none)
        self.rec_offset = self.rec_size = self.rec_quotes = 0
        self.rec_big = False
        self.rec_parts: list[bytes] = []
        self.rec_head = b""

    # -------------------------------------------------------------- feeding
    def block(self, region: bytes, line_no: int, offset: int) -> int:
        """Take ``region``, whole lines each ending in LF, whose first line is ``line_no + 1``."""
        if self.header is not None and self.rec_line == 0 and b'"' not in region:
            lines = region.split(b"\n")
            lines.pop()
            if self._clean(region, lines):
                self.chunks.append(region.replace(b"\r\n", b"\n") if b"\r" in region else region)
                self._accept(line_no + 1, len(lines))
                return len(lines)
            if len(region) > self._FAST_SPLIT:
                middle = region.find(b"\n", len(region) // 2)
                if 0 <= middle < len(region) - 1:
                    head = region[: middle + 1]
                    n = self.block(head, line_no, offset)
                    return n + self.block(region[middle + 1:], line_no + n, offset + len(head))
        lines = region.split(b"\n")
        lines.pop()
        had_header, start = self.header is not None, offset
        for i, line in enumerate(lines):
            self.physical(line, line_no + i + 1, offset, len(line), line.count(b'"'))
            offset += len(line) + 1
            if not had_header and self.header is not None and self.rec_line == 0 and i + 1 < len(lines):
                # The header is in: the rest of the block can take the fast path.
                return i + 1 + self.block(region[offset - start:], line_no + i + 1, offset)
        return len(lines)

    def _clean(self, region: bytes, lines: list[bytes]) -> bool:
        if region.translate(None, _NOT_CONTROL) or region.count(b"\r") != region.count(b"\r\n"):
            return False
        if not region.isascii():
            try:
                region.decode("utf-8")
            except UnicodeDecodeError:
                return False
        if max(map(len, lines), default=0) > self.cap:
            return False
        counts = set(map(bytes.count, lines, repeat(b",")))
        return counts <= {self.commas}

    def physical(self, line: bytes | None, line_no: int, offset: int, size: int, quotes: int,
                 head: bytes = b"") -> None:
        """Take one physical line (without its LF); ``None`` for one over the cap (skipped)."""
        if self.rec_line == 0:
            self.rec_line, self.rec_offset = line_no, offset
            self.rec_size = self.rec_quotes = 0
            self.rec_big, self.rec_parts = False, []
            self.rec_head = head if line is None else line[:256]
        else:
            self.rec_size += 1  # the LF inside the record
        self.rec_size += size
        self.rec_quotes += quotes
        if line is None or self.rec_size > self.cap:
            self.rec_big, self.rec_parts = True, []
        elif not self.rec_big:
            self.rec_parts.append(line)
        if self.rec_quotes % 2 == 0:
            self._finish()

    def end(self) -> None:
        """The stream is over: a record still open has an unterminated quote."""
        if self.rec_line:
            line_no, size = self.rec_line, self.rec_size
            self.rec_line = 0
            if self.rec_big:
                self._too_long(line_no, size)
            else:
                text = b"\n".join(self.rec_parts).decode("utf-8", errors="replace")
                self._reject(line_no, "unterminated quote", "line",
                             f"a quoted cell opened on line {line_no} never closes ({size:,} bytes to the end of the file)",
                             text, None)
        if self.header is None:
            raise DataValidationError(f"{self.source}: file holds no header line (only blank lines)")

    # -------------------------------------------------------------- records
    def _finish(self) -> None:
        line_no, offset, size = self.rec_line, self.rec_offset, self.rec_size
        self.rec_line = 0
        if self.rec_big:
            self._too_long(line_no, size)
            return
        raw = self.rec_parts[0] if len(self.rec_parts) == 1 else b"\n".join(self.rec_parts)
        self.rec_parts = []
        self._record(raw, line_no, offset)

    def _too_long(self, line_no: int, size: int) -> None:
        if self.header is None:
            raise DataValidationError(
                f"{self.source} line {line_no}: the header line is {size:,} bytes, over the {self.cap:,}-byte limit"
            )
        head = self.rec_head.decode("utf-8", errors="replace")
        self._reject(line_no, "line too long", "line", f"{size:,} bytes, limit {self.cap:,}", head,
                     self._date_cell(head.split(",")))

    def _record(self, raw: bytes, line_no: int, offset: int) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if self.header is None and raw.startswith(b"\xef\xbb\xbf"):
            raw, offset = raw[3:], offset + 3
        if not raw.strip():
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            pos = exc.start
            where = f"byte 0x{raw[pos]:02X} at byte offset {offset + pos:,} of the file (byte {pos + 1} of line {line_no})"
            if self.header is None:
                raise DataValidationError(
                    f"{self.source} line {line_no}: the header is not valid UTF-8: {where}; save the file as UTF-8"
                ) from None
            loose = raw.decode("utf-8", errors="replace")
            field = self._field_name(raw[:pos].count(b","))
            self._reject(line_no, "invalid UTF-8", field, where, loose, self._date_cell(loose.split(",")))
            return
        quoted = '"' in text
        control = _CONTROL_BYTES.search(raw)
        if control is not None:
            fields = _split_record(text) if quoted else text.split(",")
            index = next((i for i, f in enumerate(fields) if _CONTROL_BYTES.search(f.encode())),
                         raw[: control.start()].count(b","))
            name = self._field_name(index)
            if self.header is None:
                raise DataValidationError(
                    f"{self.source} line {line_no}: the header holds a control character "
                    f"(byte 0x{raw[control.start()]:02X} at byte offset {offset + control.start():,})"
                )
            cell = fields[index] if index < len(fields) else text
            reason = f"control character in {name}" if name in INPUT_COLUMNS else "control character in line"
            self._reject(line_no, reason, name,
                         f"{clip_text(ascii(cell))} (byte 0x{raw[control.start()]:02X} at byte offset "
                         f"{offset + control.start():,})", text, self._date_cell(fields))
            return
        if self.header is None:
            self.header = _split_record(text) if quoted else text.split(",")
            self.commas = len(self.header) - 1
            found = [i for i, h in enumerate(self.header) if _ALIAS_TO_COLUMN.get(h.strip().lower()) == "date"]
            self.date_index = found[0] if found else None
            self.chunks.append(raw + b"\n")
            return
        n = (len(_split_record(text)) - 1) if quoted else raw.count(b",")
        if n != self.commas:
            fields = _split_record(text) if quoted else text.split(",")
            hint = (" (a decimal comma or an unquoted comma inside a value? quote it or use '.')"
                    if n > self.commas else "")
            self._reject(line_no, "wrong number of fields", "line",
                         f"{n + 1} fields, the header has {self.commas + 1}{hint}", text, self._date_cell(fields))
            return
        self.chunks.append(raw + b"\n")
        self._accept(line_no, 1)

    # -------------------------------------------------------------- helpers
    def _accept(self, first: int, count: int) -> None:
        if self.runs and self.runs[-1][0] + self.runs[-1][1] == first:
            self.runs[-1][1] += count
        else:
            self.runs.append([first, count])

    def _reject(self, line_no: int, reason: str, field: str, value: str, text: str, date_text: str | None) -> None:
        self.rejects.append(LineReject(line_no, reason, field, clip_text(value, 2 * MAX_SHOWN_CHARS), date_text,
                                       clip_text(text)))

    def _field_name(self, index: int) -> str:
        if self.header is None or index >= len(self.header):
            return "line"
        header = self.header[index]
        return _ALIAS_TO_COLUMN.get(header.strip().lower(), header)

    def _date_cell(self, fields: list[str]) -> str | None:
        if self.date_index is None or self.date_index >= len(fields):
            return None
        cell = fields[self.date_index].strip()
        return cell[:40] or None

    def line_numbers(self) -> pl.Series:
        parts = [pl.int_range(a, a + n, dtype=pl.Int64, eager=True) for a, n in self.runs]
        return (pl.concat(parts) if parts else pl.Series(dtype=pl.Int64)).alias("line_number")


def _split_record(text: str) -> list[str]:
    return next(csv.reader([text]), [""])


def _scan_csv(path: Path, source: str, limits: InputLimits) -> tuple[pl.DataFrame, pl.Series, list[LineReject]]:
    """Read a CSV file as a bounded stream of lines, then parse the accepted records with polars.

    At most ``max_line_bytes`` plus one read block is held at a time while scanning: a longer
    line is skipped to its end and only counted. Byte offsets are of the file (of the
    decompressed data for ``.csv.gz``).
    """
    scanner = _CsvScanner(source, limits.max_line_bytes)
    cap = limits.max_line_bytes
    opener = gzip.open if _suffix(path) == ".csv.gz" else open
    try:
        with opener(path, "rb") as f:
            buf, line_no, offset = b"", 0, 0
            while True:
                chunk = f.read(_READ_BLOCK)
                if chunk:
                    buf = buf + chunk if buf else chunk
                last = buf.rfind(b"\n")
                if last >= 0:
                    region, buf = buf[: last + 1], buf[last + 1:]
                    line_no += scanner.block(region, line_no, offset)
                    offset += len(region)
                if not chunk:
                    break
                if len(buf) > cap:
                    # A line over the cap: count its bytes and quotes to its end, keep none of them.
                    size, quotes, head = len(buf), buf.count(b'"'), buf[:256]
                    buf = b""
                    while True:
                        chunk = f.read(_READ_BLOCK)
                        if not chunk:
                            break
                        nl = chunk.find(b"\n")
                        if nl < 0:
                            size += len(chunk)
                            quotes += chunk.count(b'"')
                            continue
                        size += nl
                        quotes += chunk.count(b'"', 0, nl)
                        buf = chunk[nl + 1:]
                        break
                    line_no += 1
                    scanner.physical(None, line_no, offset, size, quotes, head)
                    offset += size + 1
            if buf:
                line_no += 1
                scanner.physical(buf, line_no, offset, len(buf), buf.count(b'"'))
            scanner.end()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataValidationError(f"{source}: cannot read {_suffix(path)} file: {exc}") from exc
    try:
        frame = pl.read_csv(io.BytesIO(b"".join(scanner.chunks)), infer_schema=False, raise_if_empty=True)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise DataValidationError(f"{source}: cannot read {_suffix(path)} file: {exc}") from exc
    lines = scanner.line_numbers()
    if frame.height != lines.len():
        raise DataValidationError(
            f"{source}: read {frame.height} rows from {lines.len()} well-formed lines; please report this file"
        )
    return frame, lines, scanner.rejects


def read_price_file(
    path: str | Path, limits: InputLimits | None = None
) -> tuple[pl.DataFrame, pl.Series, list[LineReject]]:
    """Read one price file as it is: ``(rows, line number of each row, rejected lines)``.

    CSV files are read as a stream of lines (see :class:`_CsvScanner`): cells are text; a
    line over ``limits.max_line_bytes``, not valid UTF-8, holding a control character, with
    the wrong number of fields or an unterminated quote is rejected on its own (a
    :class:`LineReject` with its number, and for bad UTF-8 its byte offset); records with no
    value at all (blank lines, or only commas) are skipped. A row's line number is the line
    it starts on (header = line 1). Parquet rows are numbered from 1 and never rejected here.

    Raises
    ------
    DataValidationError
        If the file is missing, empty, unreadable, not CSV/Parquet, or its header line is
        too long, not UTF-8 or holds a control character.
    """
    source = str(path)
    frame, lines, rejects = _read_file(Path(path), source, limits)
    if _suffix(Path(path)).startswith(".csv") and frame.height:
        blank = frame.select(pl.all_horizontal(pl.all().is_null())).to_series()
        if blank.any():
            frame, lines = frame.filter(~blank), lines.filter(~blank)
    return frame, lines, rejects


def line_quarantine(rejects: Sequence[LineReject], source_file: str, market_id: str) -> pl.DataFrame:
    """Turn rejected lines into ``quarantine_rows`` (``session_date`` from the line's date cell, if any)."""
    if not rejects:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    dates, _ = _parse_dates(pl.Series("date", [r.date_text for r in rejects], dtype=pl.String), source_file)
    return quarantine_frame([
        {
            "asset": PRICES_ASSET,
            "source_file": source_file,
            "line_number": r.line_number,
            "reason": r.reason,
            "field": r.field,
            "value": r.value,
            "session_date": d,
            "market_id": market_id,
            "raw_row": {"line": r.text},
        }
        for r, d in zip(rejects, dates.to_list(), strict=True)
    ])


def _expand(paths: Sequence[str | Path]) -> list[str]:
    files: list[str] = []
    for entry in paths:
        text = str(entry)
        p = Path(entry)
        if p.is_dir():
            matches = sorted(str(c) for c in p.iterdir() if c.is_file() and _suffix(c) in SUPPORTED_SUFFIXES)
            if not matches:
                raise DataValidationError(f"{text}: directory holds no {'/'.join(SUPPORTED_SUFFIXES)} files")
            files.extend(matches)
        elif any(ch in text for ch in "*?["):
            matches = sorted(m for m in glob.glob(text, recursive=True)
                             if Path(m).is_file() and _suffix(Path(m)) in SUPPORTED_SUFFIXES)
            if not matches:
                raise DataValidationError(f"{text}: pattern matched no {'/'.join(SUPPORTED_SUFFIXES)} files")
            files.extend(matches)
        else:
            files.append(text)
    seen: set[str] = set()
    return [f for f in files if not (f in seen or seen.add(f))]


def _signature(path: str) -> tuple[int, int]:
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        raise DataValidationError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataValidationError(f"{path}: cannot read file: {exc}") from exc
    return st.st_mtime_ns, st.st_size


class FilePriceProvider:
    """Daily prices for one market from CSV/Parquet files in long format.

    Parameters
    ----------
    paths
        A file, a directory (its CSV/Parquet files), a glob pattern, or a sequence of these.
    calendar
        The market's calendar; rows dated on non-sessions are quarantined.
    market_id
        The market the rows belong to.
    currency
        Currency of the prices, unless the instrument master gives one per instrument.
    instrument_master
        Optional master (frame or CSV/Parquet file) with a ``ticker`` column and optionally
        ``instrument_id, issuer_id, name, issuer_name, sector, industry, country, currency,
        asset_class, shares_outstanding, lot_size, listing_date, delisting_date, status``.
        With a master, rows whose ticker is not in it are quarantined ("unknown ticker").
    limits
        Plausible price range, longest ticker and longest CSV line (default
        :class:`InputLimits()`; the market's ``data_limits`` when built from the configs).

    Notes
    -----
    Files are read and validated once per provider and reused while their modification time
    and size are unchanged. Duplicate (date, ticker) keys are rejected in every copy, within
    a file and across files.
    """

    source = "file"

    def __init__(
        self,
        paths: Sequence[str | Path] | str | Path,
        calendar: TradingCalendar,
        market_id: str,
        currency: str = "USD",
        instrument_master: pl.DataFrame | str | Path | None = None,
        limits: InputLimits | None = None,
    ) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        paths = list(paths)
        if not paths:
            raise DataValidationError("paths must name at least one file, directory or pattern, was empty")
        if not market_id:
            raise DataValidationError(f"market_id must be a non-empty string, was {market_id!r}")
        self.paths = paths
        self.calendar = calendar
        self.market_id = market_id
        self.currency = currency
        self.limits = limits or InputLimits()
        self._master_arg = instrument_master
        self._master: tuple[Any, pl.DataFrame] | None = None
        self._files: dict[str, tuple[tuple[int, int], pl.DataFrame, pl.DataFrame]] = {}
        self._combined: tuple[Any, pl.DataFrame, pl.DataFrame] | None = None

    def __repr__(self) -> str:
        return f"FilePriceProvider({self.paths!r}, market_id={self.market_id!r})"

    # -------------------------------------------------------------- loading
    def _master_frame(self) -> tuple[Any, pl.DataFrame | None]:
        arg = self._master_arg
        if arg is None:
            return None, None
        key: Any = ("frame", id(arg)) if isinstance(arg, pl.DataFrame) else (str(arg), _signature(str(arg)))
        if self._master is None or self._master[0] != key:
            self._master = (key, load_instrument_master(arg, self.limits))
            self._files.clear()  # known tickers changed: revalidate
        return self._master[0], self._master[1]

    def _load(self) -> tuple[tuple[str, ...], pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
        master_key, master = self._master_frame()
        known = master["ticker"].to_list() if master is not None else None
        files = _expand(self.paths)
        signatures = []
        for f in files:
            sig = _signature(f)
            signatures.append((f, sig))
            cached = self._files.get(f)
            if cached is None or cached[0] != sig:
                frame, lines, rejects = read_price_file(f, self.limits)
                valid, quarantine = validate_price_rows(
                    frame, f, self.calendar, self.market_id, known, line_numbers=lines, limits=self.limits
                )
                if rejects:
                    quarantine = pl.concat([line_quarantine(rejects, f, self.market_id), quarantine], how="vertical")
                self._files[f] = (sig, valid, quarantine)
        key = (master_key, tuple(signatures))
        if self._combined is None or self._combined[0] != key:
            valid, quarantine = _reject_cross_file_duplicates(
                [(f, self._files[f][1]) for f in files], self.market_id
            )
            quarantine = pl.concat([self._files[f][2] for f in files] + [quarantine], how="vertical")
            self._combined = (key, valid, quarantine)
        return tuple(files), self._combined[1], self._combined[2], master

    # -------------------------------------------------------------- protocol
    def reference(self) -> ReferenceData:
        """Return issuers and instruments: from the master, or one per ticker seen in valid rows.

        Raises
        ------
        DataValidationError
            If a price file or the master cannot be read.
        """
        _, master = self._master_frame()
        if master is not None:
            return reference_from_master(master, self.market_id, self.currency)
        _, valid, _, _ = self._load()
        return derive_reference(valid["ticker"].unique().to_list(), self.market_id, self.currency)

    def prices(self, sessions: Sequence[date]) -> LoadResult:
        """Return ``prices_daily`` rows for exactly ``sessions`` and the rows rejected around them.

        The quarantine holds every rejected row dated within ``min(sessions)..max(sessions)``
        plus every rejected row without a usable date.

        Raises
        ------
        DataValidationError
            If a file cannot be read or lacks a required column.
        """
        wanted = sorted(set(sessions))
        files, valid, quarantine, master = self._load()
        if not wanted:
            return LoadResult(empty_frame("prices_daily"), pl.DataFrame(schema=QUARANTINE_SCHEMA), files)
        session_series = pl.Series(wanted, dtype=pl.Date).implode()
        rows = valid.filter(pl.col("session_date").is_in(session_series))
        instruments = _instruments_from_master(master, self.market_id, self.currency) if master is not None else None
        frame = to_prices_daily(rows, self.market_id, self.currency, self.source, instruments)
        rejected = quarantine.filter(
            pl.col("session_date").is_null() | pl.col("session_date").is_between(wanted[0], wanted[-1])
        ).sort("source_file", "line_number", "reason")
        return LoadResult(frame=frame, quarantine=rejected, source_files=files)


def _reject_cross_file_duplicates(
    parts: list[tuple[str, pl.DataFrame]], market_id: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    if not parts:
        return pl.DataFrame(schema=VALID_PRICE_SCHEMA), pl.DataFrame(schema=QUARANTINE_SCHEMA)
    if len(parts) == 1:
        return parts[0][1], pl.DataFrame(schema=QUARANTINE_SCHEMA)
    tagged = pl.concat([v.with_columns(pl.lit(f).alias("_source_file")) for f, v in parts], how="vertical")
    dup = tagged.select(pl.struct("session_date", "ticker").is_duplicated()).to_series()
    if not dup.any():
        return tagged.drop("_source_file"), pl.DataFrame(schema=QUARANTINE_SCHEMA)
    clashes = tagged.filter(dup)
    where = clashes.group_by("session_date", "ticker").agg(
        (pl.col("_source_file") + " line " + pl.col("line_number").cast(pl.String)).alias("_where")
    )
    rows = []
    for r in clashes.join(where, on=["session_date", "ticker"]).iter_rows(named=True):
        here = f"{r['_source_file']} line {r['line_number']}"
        others = [w for w in r["_where"] if w != here]
        raw = {k: r[k] for k in _VALID_COLUMNS if k != "line_number"}
        rows.append({
            "asset": PRICES_ASSET,
            "source_file": r["_source_file"],
            "line_number": r["line_number"],
            "reason": "duplicate key",
            "field": RULES["duplicate key"].field,
            "value": f"date={r['session_date']}, ticker={r['ticker']} (also in {'; '.join(others)})",
            "session_date": r["session_date"],
            "market_id": market_id,
            "raw_row": json.dumps(raw, default=str, sort_keys=True),
        })
    return tagged.filter(~dup).drop("_source_file"), quarantine_frame(rows)


__all__ = [
    "COLUMN_ALIASES",
    "LINE_REASONS",
    "RULES",
    "VALID_PRICE_SCHEMA",
    "FilePriceProvider",
    "LineReject",
    "clip_text",
    "derive_reference",
    "line_quarantine",
    "load_instrument_master",
    "price_row_schema",
    "read_price_file",
    "reference_from_master",
    "resolve_columns",
    "to_prices_daily",
    "validate_price_rows",
]
