"""A synthetic market in a warehouse, for the panel tests, and an independent reference.

``fill_market`` writes markets/issuers/instruments and prices for a session range;
``build_panels`` runs dbt's panel models for a window. The reference computations in the panel
tests use polars/numpy only, never the SQL.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from datetime import date
from pathlib import Path

import polars as pl

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import load_config
from prometheus_lib.data.ingestion import ingest_prices, reference_frames
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig
from prometheus_lib.storage.dbt import DbtRun, dbt_target_env, panel_env, run_dbt
from prometheus_lib.storage.factory import open_warehouse

MARKET_ID = "US_EQ"
CALENDAR = TradingCalendar("XNYS")
PANELS = ("returns_daily", "volatility_daily", "factors_daily", "instrument_factors_daily", "correlation_panels")


@functools.cache
def synthetic_frames(n_instruments: int, start: date, end: date, seed: int = 7) -> dict[str, pl.DataFrame]:
    """Reference tables and prices of a synthetic market over ``start..end`` (cached)."""
    # A small-cap market (largest company $4bn): a 10 M book trading it meets binding volume caps,
    # which the execution tests need.
    config = SyntheticMarketConfig(n_instruments=n_instruments, seed=seed, history_start=CALENDAR.validate_session(start),
                                   ipo_fraction=0.2, ipo_window_sessions=200, largest_market_cap=4.0e9)
    market = SyntheticMarket(config, CALENDAR)
    ref = market.reference()
    frames = reference_frames(load_config())
    return {
        "markets": frames["markets"],
        "issuers": ref.issuers,
        "instruments": ref.instruments,
        "prices_daily": ingest_prices(market, CALENDAR.sessions(start, end)).prices,
    }


def fill_market(location: dict[str, str], frames: dict[str, pl.DataFrame], start: date, end: date) -> None:
    """Write reference tables and the prices of ``start..end`` into the warehouse, then close it."""
    with open_warehouse(**location) as wh:
        wh.replace_table("markets", frames["markets"])
        wh.replace_table("issuers", frames["issuers"], {"market_id": MARKET_ID})
        wh.replace_table("instruments", frames["instruments"], {"market_id": MARKET_ID})
        prices = frames["prices_daily"].filter(pl.col("session_date").is_between(start, end))
        wh.write_partition("prices_daily", prices, start, end, {"market_id": MARKET_ID})


@functools.cache
def _work_dir(warehouse: str) -> Path:
    """dbt's target and log folder for one warehouse (its DuckDB file or PostgreSQL URL)."""
    work = Path(tempfile.mkdtemp(prefix="dbt_"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def build_panels(location: dict[str, str], start: date, end: date, select: str = "prometheus", work: Path | None = None,
                 command: str = "build") -> DbtRun:
    """``dbt build`` (or ``command``) the panel models and what they need for sessions ``start..end``.

    Without ``work``, every build of one warehouse runs in the same work folder, so the second
    and later builds keep dbt's partial parse (a full parse costs seconds; dbt parses again in
    full whenever the warehouse, i.e. the profile's path or database, changes).
    """
    env = dbt_target_env(location["backend"], location.get("duckdb_path"), location.get("postgres_url"))
    work = work or _work_dir(location.get("duckdb_path") or location["postgres_url"])
    return run_dbt([command, "--select", select], env, work, panel_env(start, end, MARKET_ID))


def read_panel(location: dict[str, str], table: str) -> pl.DataFrame:
    """Read a panel table back (all rows, catalogue types, sorted by key)."""
    with open_warehouse(**location) as wh:
        return wh.read_table(table)
