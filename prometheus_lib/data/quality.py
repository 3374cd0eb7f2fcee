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
