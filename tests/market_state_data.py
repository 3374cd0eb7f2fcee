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


# ---------------------------------------------------------------- scoring against the truth
def balanced_accuracy(true: list[str], predicted: list[str]) -> float:
    """Mean over the true classes present of the share of their sessions labelled correctly."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(true, predicted))


def detection_lags(true: list[str], predicted: list[str], max_lag: int = 21) -> tuple[list[int], int]:
    """Sessions from each true switch to the first session the prediction shows the new state.

    A switch is a session whose true state differs from the previous session's. The lag is 0 when
    the prediction shows the new state on the switch session itself. A switch is missed when the
    prediction does not show the new state within ``max_lag`` sessions or before the true state
    changes again. Returns (lags of the detected switches, number missed).
    """
    lags, missed = [], 0
    n = len(true)
    for k in range(1, n):
        if true[k] == true[k - 1]:
            continue
        state = true[k]
        found = None
        for j in range(k, min(n, k + max_lag + 1)):
            if j > k and true[j] != state:
                break
            if predicted[j] == state:
                found = j - k
                break
        if found is None:
            missed += 1
        else:
            lags.append(found)
    return lags, missed


def fragility_labels(market: SyntheticMarket, panel: MarketPanel, horizon: int) -> pl.DataFrame:
    """Per (instrument, session) of the panel: ``event`` = a planted crash starts within the next ``horizon`` sessions.

    Columns: instrument_id, session_date, event (bool), in_crash (bool: the instrument is in a
    planted crash at the session; such rows are left out of the AUC — the move is under way).
    """
    days = panel.session_dates()
    signals = market.true_signals(days).select("instrument_id", "session_date", "fragility_phase")
    events = market.true_fragility_events(days)
    index = {d: k for k, d in enumerate(days)}
    rows: dict[str, list] = {"instrument_id": [], "session_date": [], "event": []}
    for iid, crash in zip(events["instrument_id"].to_list(), events["crash_start_date"].to_list()):
        k = index.get(crash)
        if k is None:
            continue
        for j in range(max(0, k - horizon), k):  # T < crash <= T + horizon
            rows["instrument_id"].append(iid)
            rows["session_date"].append(days[j])
            rows["event"].append(True)
    positives = pl.DataFrame(rows, schema={"instrument_id": pl.String, "session_date": pl.Date, "event": pl.Boolean})
    positives = positives.unique(["instrument_id", "session_date"])
    return (signals.join(positives, on=["instrument_id", "session_date"], how="left")
            .with_columns(pl.col("event").fill_null(False), (pl.col("fragility_phase") == 2).alias("in_crash"))
            .drop("fragility_phase"))


def roc_auc(labels, scores) -> float:
    """ROC AUC of ``scores`` for the boolean ``labels`` (sklearn)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


# ---------------------------------------------------------------- look-ahead perturbation
# Arrays whose cells are positive (prices, volumes, volatilities): noise for them is log-normal.
POSITIVE = frozenset({"close", "volume", "vol_21", "vol_63", "vol_ewma", "downside_vol_63", "residual_vol"})


def perturbed_after(panel: MarketPanel, cut: date, seed: int = 1) -> MarketPanel:
    """``panel`` with every cell of every array after ``cut`` replaced by noise (5 % of cells NaN).

    The engines' look-ahead tests require every output at or before ``cut`` to be bit-identical
    on this panel.
    """
    import numpy as np

    from prometheus_lib.market_state.panel import INSTRUMENT_ARRAYS, MARKET_ARRAYS

    rng = np.random.default_rng(seed)
    k = panel.index_of(cut) + 1
    changes = {}
    for name in (*INSTRUMENT_ARRAYS, *MARKET_ARRAYS):
        a = getattr(panel, name).copy()
        noise = rng.lognormal(0.0, 1.0, a[k:].shape) if name in POSITIVE else rng.normal(0.0, 0.1, a[k:].shape)
        a[k:] = np.where(rng.random(a[k:].shape) < 0.05, np.nan, noise)
        changes[name] = a
    return panel.replace(**changes)
