"""A synthetic market's real panels (dbt on DuckDB) as a ``MarketPanel``, with its ground truth.

For the market-state engines' tests and for ``bench/engines.py``: ``synthetic_panel`` generates
a synthetic market (``prometheus_lib.data.synthetic``), writes its reference tables and prices
into a DuckDB warehouse, builds every dbt panel for the span (returns, volatility, factors,
exposures, correlations), and loads them with ``load_market_panel``, exactly as the Dagster
assets do. The market object comes back too: tests read its truth (``true_regimes``,
``true_signals``, ``true_fragility_events``); engines never see it.
"""

from __future__ import annotations

import functools
import tempfile
from datetime import date
from pathlib import Path

import polars as pl

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.config import load_config
from prometheus_lib.data.ingestion import ingest_prices, reference_frames
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig
from prometheus_lib.market_state import MarketPanel, load_market_panel
from prometheus_lib.storage.dbt import dbt_target_env, panel_env, run_dbt
from prometheus_lib.storage.factory import open_warehouse

CALENDARS = {"US": "XNYS", "EU": "XETR", "JP": "XTKS"}
MARKET_IDS = {"US": "US_EQ", "EU": "EU_EQ", "JP": "JP_EQ"}
PREFIXES = {"US": "SYN", "EU": "SYNEU", "JP": "SYNJP"}


def market_config(region: str = "US", n_instruments: int = 60, history_start: date = date(2016, 1, 4),
                  seed: int = 42, **overrides) -> SyntheticMarketConfig:
    """A synthetic market of ``region`` (US, EU or JP) on the shared world seed of configs/markets.yaml."""
    cal = TradingCalendar(CALENDARS[region])
    start = cal.validate_session(history_start) if cal.is_session(history_start) else cal.next_session(history_start)
    return SyntheticMarketConfig(
        seed=seed, n_instruments=n_instruments, market_id=MARKET_IDS[region], calendar_code=CALENDARS[region],
        region=region, id_prefix=PREFIXES[region], world_seed=2015, history_start=start, **overrides)


def build_warehouse(path: Path, config: SyntheticMarketConfig, end: date) -> tuple[dict[str, str], list[date]]:
    """Write ``config``'s market (reference + prices up to ``end``) into a DuckDB file and build its panels."""
    cal = TradingCalendar(config.calendar_code)
    market = SyntheticMarket(config, cal)
    sessions = cal.sessions(config.history_start, end)
    location = {"backend": "duckdb", "duckdb_path": str(path)}
    ref = market.reference()
    frames = reference_frames(load_config())
    with open_warehouse(**location) as wh:
        wh.replace_table("markets", frames["markets"])
        wh.replace_table("issuers", ref.issuers, {"market_id": config.market_id})
        wh.replace_table("instruments", ref.instruments, {"market_id": config.market_id})
        prices = ingest_prices(market, sessions).prices
        wh.write_partition("prices_daily", prices, sessions[0], sessions[-1], {"market_id": config.market_id})
    env = dbt_target_env("duckdb", str(path), None)
    work = Path(tempfile.mkdtemp(prefix="dbt_ms_", dir=path.parent))
    run_dbt(["run", "--select", "prometheus"], env, work, panel_env(sessions[0], sessions[-1], config.market_id))
    return location, sessions


@functools.cache
def synthetic_panel(config: SyntheticMarketConfig, end: date) -> tuple[MarketPanel, SyntheticMarket]:
    """``config``'s market up to ``end``: its dbt panels as a ``MarketPanel`` and the market (for its truth).

    Cached per process; the warehouse lives in a temporary folder.
    """
    folder = Path(tempfile.mkdtemp(prefix="market_state_"))
    location, sessions = build_warehouse(folder / "wh.duckdb", config, end)
    with open_warehouse(**location) as wh:
        panel = load_market_panel(wh, config.market_id, config.region, sessions)
    return panel, SyntheticMarket(config, TradingCalendar(config.calendar_code))


def truth_frame(market: SyntheticMarket, panel: MarketPanel, kind: str) -> pl.DataFrame:
    """The market's truth of ``kind`` (regimes, signals, fragility_events) over the panel's sessions."""
    days = panel.session_dates()
    return {"regimes": market.true_regimes, "signals": market.true_signals,
            "fragility_events": market.true_fragility_events}[kind](days)
