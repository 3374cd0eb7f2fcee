"""Data-quality rules for ingested tables, as plain functions returning ``CheckOutcome``.

The Dagster layer turns each outcome into an ``AssetCheckResult``; ERROR outcomes block
downstream assets, WARN outcomes do not. Every failing outcome carries counts and a few
example rows so the checks dashboard says what is wrong and where.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandera.polars as pa
import polars as pl

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.storage.catalog import ColumnType, get_table

_EXAMPLES = 5


class Severity(str, enum.Enum):
    """How bad a failing check is: ERROR blocks downstream assets, WARN does not."""

    ERROR = "ERROR"
    WARN = "WARN"


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """The result of one data-quality rule on one table and session range."""

    passed: bool
    severity: Severity
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _examples(frame: pl.DataFrame, n: int = _EXAMPLES) -> list[dict[str, Any]]:
    return [{k: (str(v) if v is not None else None) for k, v in r.items()} for r in frame.head(n).to_dicts()]


# ------------------------------------------------------------------ pandera schemas
_PANDERA_DTYPES = {
    ColumnType.TEXT: pl.String,
    ColumnType.DATE: pl.Date,
    ColumnType.TIMESTAMP: pl.Datetime("us", "UTC"),
    ColumnType.DOUBLE: pl.Float64,
    ColumnType.BIGINT: pl.Int64,
    ColumnType.INTEGER: pl.Int32,
    ColumnType.BOOLEAN: pl.Boolean,
    ColumnType.JSON: pl.String,
    ColumnType.FLOAT_ARRAY: pl.List(pl.Float64),
}

# Domain checks per table and column, on top of types and nullability from the catalogue.
_COLUMN_CHECKS: dict[str, dict[str, list[pa.Check]]] = {
    "prices_daily": {
        "open": [pa.Check.gt(0)],
        "high": [pa.Check.gt(0)],
        "low": [pa.Check.gt(0)],
        "close": [pa.Check.gt(0)],
        "adjusted_close": [pa.Check.gt(0)],
        "volume": [pa.Check.ge(0)],
        "currency": [pa.Check.str_matches(r"^[A-Z]{3}$")],
    },
    "news_articles": {"headline": [pa.Check.str_length(min_value=1)]},
    "news_links": {"relevance": [pa.Check.in_range(0.0, 1.0)]},
    "earnings_calls": {"fiscal_period": [pa.Check.str_matches(r"^\d{4}Q[1-4]$")]},
}


def pandera_schema(table: str) -> pa.DataFrameSchema:
    """Return the pandera schema of a stored table: catalogue types, nullability, domain checks."""
    t = get_table(table)
    checks = _COLUMN_CHECKS.get(t.name, {})
    columns = {
        c.name: pa.Column(
            _PANDERA_DTYPES[c.type],
            nullable=c.nullable and c.name not in t.primary_key,
            checks=checks.get(c.name, []),
            required=True,
        )
        for c in t.columns
    }
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name=t.qualified_name)


def check_schema(table: str, frame: pl.DataFrame) -> CheckOutcome:
    """Validate ``frame`` against the table's pandera schema (ERROR on any failure)."""
    try:
        pandera_schema(table).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as e:
        cases = e.failure_cases
        by_check = (
            cases.group_by(["column", "check"]).len().sort("len", descending=True)
            if {"column", "check"} <= set(cases.columns) else cases.head(0)
        )
        return CheckOutcome(
            False,
            Severity.ERROR,
            f"{cases.height} schema failures in {table}",
            {
                "failures": cases.height,
                "by_check": _examples(by_check, 20),
                "examples": _examples(cases),
            },
        )
    return CheckOutcome(True, Severity.ERROR, f"{frame.height} rows match the {table} schema", {"rows": frame.height})


def check_unique_key(table: str, frame: pl.DataFrame) -> CheckOutcome:
    """Fail (ERROR) if any primary key appears more than once."""
    key = list(get_table(table).primary_key)
    dup = frame.filter(pl.struct(key).is_duplicated()).select(key).unique()
    return CheckOutcome(
        dup.is_empty(),
        Severity.ERROR,
        f"{dup.height} duplicated keys {tuple(key)} in {table}" if dup.height else f"keys {tuple(key)} are unique",
        {"duplicated_keys": dup.height, "examples": _examples(dup), "rows": frame.height},
    )


def check_ohlc(frame: pl.DataFrame) -> CheckOutcome:
    """Fail (ERROR) unless high >= max(open, close) >= min(open, close) >= low > 0 where known."""
    o, h, lo, c = pl.col("open"), pl.col("high"), pl.col("low"), pl.col("close")
    rules = {
        "close <= 0": c <= 0,
        "low <= 0": lo <= 0,
        "high < low": h < lo,
        "high < max(open, close)": h < pl.max_horizontal(o, c),
        "low > min(open, close)": lo > pl.min_horizontal(o, c),
    }
    counts = frame.select([r.fill_null(False).sum().alias(name) for name, r in rules.items()]).row(0, named=True)
    bad_mask = pl.any_horizontal([r.fill_null(False) for r in rules.values()])
    bad = frame.filter(bad_mask)
    return CheckOutcome(
        bad.is_empty(),
        Severity.ERROR,
        f"{bad.height} rows violate OHLC consistency" if bad.height else "OHLC consistent on every row",
        {"violations": bad.height, "by_rule": {k: int(v) for k, v in counts.items()},
         "examples": _examples(bad.select("instrument_id", "session_date", "open", "high", "low", "close"))},
    )


PRICE_COLUMNS = ("open", "high", "low", "close", "adjusted_close")


def check_price_bounds(frame: pl.DataFrame, min_price: float, max_price: float) -> CheckOutcome:
    """Fail (ERROR) if a price is not finite or lies outside ``[min_price, max_price]``.

    The importers quarantine such rows; this guards every provider's frame before it is written
    (a return of 2e306 from a close of 1e-300 must never reach a panel).
    """
    columns = [c for c in PRICE_COLUMNS if c in frame.columns]
    rules = {
        c: pl.col(c).is_not_null() & (pl.col(c).is_nan() | ~pl.col(c).is_between(min_price, max_price))
        for c in columns
    }
    counts = frame.select([r.sum().alias(c) for c, r in rules.items()]).row(0, named=True) if columns else {}
    bad = frame.filter(pl.any_horizontal(list(rules.values()))) if columns else frame.head(0)
    keys = [c for c in ("instrument_id", "session_date") if c in frame.columns]
    return CheckOutcome(
        bad.is_empty(),
        Severity.ERROR,
        f"{bad.height} rows hold a price that is not finite or outside {min_price:g}..{max_price:g}" if bad.height
        else f"every price is finite and within {min_price:g}..{max_price:g}",
        {"violations": bad.height, "by_column": {k: int(v or 0) for k, v in counts.items()},
         "min_price": min_price, "max_price": max_price,
         "examples": _examples(bad.select(*keys, *columns))},
    )


def check_price_jumps(frame: pl.DataFrame, max_daily_move: float, previous: pl.DataFrame | None = None) -> CheckOutcome:
    """WARN when an instrument's adjusted close jumps beyond the relative limit from its previous close.

    A jump is an adjusted close above ``(1 + max_daily_move)`` or below ``1 / (1 + max_daily_move)``
    times the instrument's previous row (``previous`` holds earlier rows, for the first session
    of ``frame``). Real moves like this happen (a takeover, a biotech readout) and unadjusted
    splits look like them: a WARN to look at, never a rejection.
    """
    cols = ["instrument_id", "session_date", "adjusted_close"]
    rows = frame.select(cols)
    first = rows["session_date"].min() if rows.height else None
    if previous is not None and previous.height and first is not None:
        rows = pl.concat([previous.select(cols).filter(pl.col("session_date") < first), rows])
    up = 1.0 + max_daily_move
    moves = (
        rows.sort("instrument_id", "session_date")
        .with_columns(
            pl.col("adjusted_close").shift(1).over("instrument_id").alias("previous_close"),
            pl.col("session_date").shift(1).over("instrument_id").alias("previous_session"),
        )
        .with_columns((pl.col("adjusted_close") / pl.col("previous_close")).alias("ratio"))
    )
    if first is not None:
        moves = moves.filter(pl.col("session_date") >= first)
    jumps = moves.filter((pl.col("ratio") > up) | (pl.col("ratio") < 1.0 / up))
    return CheckOutcome(
        jumps.is_empty(),
        Severity.WARN,
        f"{jumps.height} adjusted closes moved beyond x{up:g} or /{up:g} from the previous close" if jumps.height
        else f"no adjusted close moved beyond x{up:g} or /{up:g} from the previous close",
        {"jumps": jumps.height, "max_daily_move": max_daily_move,
         "examples": _examples(jumps.sort("ratio", descending=True).select(
             "instrument_id", "previous_session", "previous_close", "session_date", "adjusted_close", "ratio"))},
    )


def check_not_emptied(
    table: str,
    frame: pl.DataFrame,
    stored_rows: int,
    start: date,
    end: date,
    allow_empty: bool = False,
    key: str | None = None,
    stored_keys: Sequence[str] = (),
) -> CheckOutcome:
    """Fail (ERROR) when a write would remove data the source no longer yields.

    A source yielding no rows for a range that holds ``stored_rows`` (or, with ``key``, no rows
    for a ``stored_keys`` value that has rows there, such as an instrument missing from a
    truncated file) is an error unless ``allow_empty``: an empty or truncated input must never
    replace good data silently.
    """
    meta: dict[str, Any] = {"rows_new": frame.height, "rows_stored": stored_rows, "allow_empty": allow_empty}
    vanished: list[str] = []
    if key is not None and stored_keys and frame.height:
        present = set(frame.get_column(key).unique().to_list())
        vanished = sorted(k for k in stored_keys if k not in present)
        meta.update({"vanished": len(vanished), f"vanished_{key}s": vanished[:_EXAMPLES * 2]})
    emptied = frame.is_empty() and stored_rows > 0
    if (emptied or vanished) and not allow_empty:
        what = (f"the source yields no {table} rows for {start}..{end}, where the warehouse holds {stored_rows}"
                if emptied else
                f"the source yields no {table} rows for {len(vanished)} {key}s that have rows in {start}..{end} "
                f"({', '.join(vanished[:_EXAMPLES])}{', ...' if len(vanished) > _EXAMPLES else ''})")
        return CheckOutcome(False, Severity.ERROR, what + "; an empty or truncated source would delete them", meta)
    if emptied or vanished:
        return CheckOutcome(True, Severity.ERROR, f"allowed to remove {table} rows in {start}..{end} (allow_empty)", meta)
    return CheckOutcome(True, Severity.ERROR, f"the source yields {frame.height} {table} rows for {start}..{end}", meta)


def check_sessions(
    frame: pl.DataFrame,
    calendar: TradingCalendar,
    start: date,
    end: date,
    date_column: str = "session_date",
    instruments: pl.DataFrame | None = None,
    require_every_session: bool = True,
    max_gap_share: float = 0.0,
) -> CheckOutcome:
    """Check rows against the calendar's sessions in ``[start, end]``.

    ERROR when a row is dated on a non-session, or (``require_every_session``) a session of
    the range has no row at all. When ``instruments`` (instrument_id, listing_date,
    delisting_date) is given, missing (instrument, session) cells while listed are counted:
    more than ``max_gap_share`` of the expected cells fails with WARN.
    """
    sessions = calendar.sessions(start, end)
    session_set = pl.Series("s", sessions, dtype=pl.Date)
    dates = frame.get_column(date_column).unique()
    off = dates.filter(~dates.is_in(session_set.implode()))
    missing = session_set.filter(~session_set.is_in(dates.implode())) if require_every_session else session_set.head(0)
    meta: dict[str, Any] = {
        "sessions_expected": len(sessions),
        "sessions_present": int(dates.is_in(session_set.implode()).sum()),
        "non_session_dates": [str(d) for d in off.sort().head(_EXAMPLES)],
        "missing_sessions": [str(d) for d in missing.head(_EXAMPLES)],
        "missing_sessions_count": missing.len(),
    }
    if off.len() or missing.len():
        return CheckOutcome(False, Severity.ERROR,
                            f"{off.len()} non-session dates and {missing.len()} sessions without rows in {start}..{end}", meta)
    if instruments is not None and "instrument_id" in frame.columns and sessions:
        grid = (
            instruments.select("instrument_id", "listing_date", "delisting_date")
            .join(pl.DataFrame({date_column: sessions}, schema={date_column: pl.Date}), how="cross")
            .filter(
                (pl.col("listing_date").is_null() | (pl.col(date_column) >= pl.col("listing_date")))
                & (pl.col("delisting_date").is_null() | (pl.col(date_column) <= pl.col("delisting_date")))
            )
            .select("instrument_id", date_column)
        )
        gaps = grid.join(frame.select("instrument_id", date_column), on=["instrument_id", date_column], how="anti")
        share = gaps.height / grid.height if grid.height else 0.0
        meta.update({"expected_cells": grid.height, "missing_cells": gaps.height, "missing_share": round(share, 6),
                     "gap_examples": _examples(gaps.sort(date_column))})
        if share > max_gap_share:
            return CheckOutcome(False, Severity.WARN,
                                f"{gaps.height} instrument-sessions missing while listed ({share:.4%} > {max_gap_share:.4%})", meta)
    if require_every_session:
        return CheckOutcome(True, Severity.ERROR, f"all {len(sessions)} sessions in {start}..{end} present", meta)
    return CheckOutcome(True, Severity.ERROR, f"all {frame.height} rows in {start}..{end} are dated on sessions", meta)


def check_freshness(latest: date | None, calendar: TradingCalendar, as_of_session: date, max_lag_sessions: int) -> CheckOutcome:
    """WARN when the newest session in a table lags ``as_of_session`` by more than allowed.

    ``as_of_session`` is the last session that has closed by the evaluation clock (for the
    synthetic market, the end of its simulated history).
    """
    if latest is None:
        return CheckOutcome(False, Severity.WARN, "table is empty", {"latest_session": None, "as_of_session": str(as_of_session)})
    lag = len(calendar.sessions(latest, as_of_session)) - 1 if latest <= as_of_session else 0
    ok = lag <= max_lag_sessions
    return CheckOutcome(
        ok,
        Severity.WARN,
        f"latest session {latest} is {lag} sessions behind {as_of_session} (allowed {max_lag_sessions})",
        {"latest_session": str(latest), "as_of_session": str(as_of_session), "lag_sessions": lag,
         "max_lag_sessions": max_lag_sessions},
    )


def summarise(outcomes: Sequence[CheckOutcome]) -> dict[str, int]:
    """Count passed and failed outcomes by severity."""
    out = {"passed": 0, "failed_error": 0, "failed_warn": 0}
    for o in outcomes:
        if o.passed:
            out["passed"] += 1
        elif o.severity is Severity.ERROR:
            out["failed_error"] += 1
        else:
            out["failed_warn"] += 1
    return out
