"""Backtest benchmark: the baseline strategy, daily rebalanced, 500 instruments x 10 years.

    .venv/bin/python bench/backtest.py [--instruments 500] [--years 10] [--work DIR]
                                       [--backtrader-years 1] [--skip-backtrader] [--profile]
                                       [--repeat 3] [--cold 3]

The synthetic market (tests/panel_data.py: ``synthetic_frames`` / ``fill_market``, then dbt's
panel models, correlation panels left out) covers the backtest window plus one year of warm-up
for the 12-1 momentum; the built DuckDB warehouse is cached under ``--work`` (default: a folder
in the temp dir) so re-runs skip the build. The backtest window is the last ``--years`` years
ending 2023-12-29 (10 years = 2,516 XNYS sessions). Strategy: ``US_CORE_LONG_EQ`` from configs/
(universe_size 50, cap 5 %, fills at the close, 5 bps slippage, IBKR tiered commission).

Timed, one after the other on the same data:
  ours        the library loop alone: ``BacktestData.load`` + ``run_decisions`` + ``run_execution``
  dagster     one Dagster run of the backtest job over the whole range (a single-run backfill of
              the session partitions) on the embedded default (SQLite, tuned), Dagster's own
              SQLite storage, and PostgreSQL storage
  vectorbt    (1) the same target weights computed vectorised in pandas/numpy from the same panel
              tables (read + pivot + scores/filters/top-K/capped inverse-vol); (2)
              ``Portfolio.from_orders(size_type='targetpercent', cash_sharing=True,
              call_seq='auto')`` on *our* targets, so the engine comparison is like for like;
              numba compilation is warmed up on a tiny input first and reported apart
  backtrader  the same strategy inside backtrader: one feed per instrument carrying the panel
              inputs (score, volatility, the history/liquidity filter from pandas rolling windows),
              top-K + capped inverse-vol weights + ``order_target_percent`` in ``Strategy.next``,
              fills at the close (cheat-on-close); read and inputs timed whole, the run on the
              first ``--backtrader-years`` years and extrapolated linearly to the whole window

The library loop and vectorbt (read + targets + simulation) each run ``--repeat`` times in this
process, each run from a fresh read (medians in the table), then ``--cold`` times each in a fresh
process, alternating ours / vectorbt, the imports untimed: a backtest runs in a new process, so
the goal line compares these cold medians (every run is printed).

Goals: the library loop within 2x of vectorbt (read + targets + simulation), and at least 20x
faster than backtrader (read + inputs + run, the run extrapolated). ``--profile`` prints the
library loop's cProfile (top 25 by cumulative time, and by own time) from a separate pass.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from panel_data import CALENDAR, MARKET_ID, fill_market, synthetic_frames  # noqa: E402

from prometheus_lib.backtest.runner import BacktestData, BookState, run_decisions, run_execution  # noqa: E402
from prometheus_lib.config import load_config  # noqa: E402
from prometheus_lib.storage.dbt import dbt_target_env, panel_env, run_dbt  # noqa: E402
from prometheus_lib.storage.factory import open_warehouse  # noqa: E402
from prometheus_lib.strategies.baseline import BaselineStrategy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STRATEGY_ID = "US_CORE_LONG_EQ"
UNIVERSE_SIZE = 50
LAST_SESSION = date(2023, 12, 29)
RUN_ID = "bench"


def _median(values) -> float:
    return float(np.median(list(values)))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ---------------------------------------------------------------- the market (cached)


def build_market(work: Path, n_instruments: int, years: int) -> tuple[dict, list[date], list[date]]:
    """Return the warehouse location, all sessions (warm-up included) and the backtest sessions."""
    bt_sessions = CALENDAR.sessions(date(LAST_SESSION.year + 1 - years, 1, 1), LAST_SESSION)
    all_sessions = CALENDAR.sessions(date(LAST_SESSION.year - years, 1, 1), LAST_SESSION)
    first, last = all_sessions[0], all_sessions[-1]
    path = work / f"backtest_{n_instruments}i_{years}y.duckdb"
    done = path.with_suffix(".done.json")
    location = {"backend": "duckdb", "duckdb_path": str(path)}
    if done.exists() and path.exists():
        info = json.loads(done.read_text())
        print(f"warehouse (cached): {path}  built earlier in {info['total_s']:.1f} s "
              f"(generate {info['generate_s']:.1f}, fill {info['fill_s']:.1f}, dbt {info['dbt_s']:.1f})")
        return location, all_sessions, bt_sessions
    work.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    shutil.rmtree(work / "dbt", ignore_errors=True)
    frames, gen_s = _timed(lambda: synthetic_frames(n_instruments, first, last))
    _, fill_s = _timed(lambda: fill_market(location, frames, first, last))
    env = dbt_target_env("duckdb", str(path), None)
    run, dbt_s = _timed(lambda: run_dbt(["run", "--exclude", "correlation_panels"], env, work / "dbt",
                                        panel_env(first, last, MARKET_ID)))
    if run.returncode != 0:
        raise SystemExit(f"dbt run failed:\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
    info = {"generate_s": gen_s, "fill_s": fill_s, "dbt_s": dbt_s, "total_s": gen_s + fill_s + dbt_s}
    done.write_text(json.dumps(info))
    print(f"warehouse (built): {path}  {info['total_s']:.1f} s "
          f"(generate {gen_s:.1f}, fill {fill_s:.1f}, dbt run {dbt_s:.1f}); "
          f"{frames['prices_daily'].height:,} price rows")
    return location, all_sessions, bt_sessions


def strategy_config():
    cfg = load_config().strategy(STRATEGY_ID)
    return cfg.model_copy(update={"universe_size": UNIVERSE_SIZE})


# ---------------------------------------------------------------- (a) the library loop


def run_library(location: dict, all_sessions: list[date], bt_sessions: list[date]) -> dict:
    """BacktestData.load + run_decisions + run_execution, each timed."""
    cfg = strategy_config()
    pf = cfg.portfolios[0]
    with open_warehouse(**location) as wh:
        data, load_s = _timed(lambda: BacktestData.load(wh, market_id=MARKET_ID, sessions=all_sessions))
    strategy = BaselineStrategy(cfg, data.index, data.sectors, RUN_ID)
    (rows, targets), dec_s = _timed(lambda: run_decisions(data, strategy, pf, bt_sessions, run_id=RUN_ID))
    ex, exe_s = _timed(lambda: run_execution(data, cfg, pf, bt_sessions, targets, run_id=RUN_ID,
                                             start=BookState.initial(pf.initial_capital)))
    frames, frames_s = _timed(lambda: {**rows.frames(), **ex.frames()})
    fills = frames["fills"]
    notional = float((fills["quantity"] * fills["price"]).sum())
    commission = float(fills["commission"].sum())
    return {
        "data": data, "targets": targets, "ex": ex, "load_s": load_s, "decisions_s": dec_s,
        "execution_s": exe_s, "frames_s": frames_s, "rows": sum(f.height for f in frames.values()),
        "orders": frames["orders"].height, "fills": fills.height,
        "commission_rate": commission / notional if notional else 0.0,
        "equity": [r["equity"] for r in ex.backtest_daily_equity],
    }


def profile_library(location: dict, all_sessions: list[date], bt_sessions: list[date], top: int = 25) -> None:
    """cProfile a fresh load + decisions + execution; print the top entries."""
    prof = cProfile.Profile()
    prof.enable()
    run_library(location, all_sessions, bt_sessions)
    prof.disable()
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(key).print_stats(top)
        text = out.getvalue()
        print(f"\n---- cProfile of the library loop, top {top} by {key} ----")
        print(text[text.find("   ncalls"):].rstrip())


# ---------------------------------------------------------------- (b) Dagster (hook)


def time_dagster_backfill(location: dict, all_sessions: list[date], bt_sessions: list[date], *,
                          storage: str) -> dict | None:
    """Run the backtest job over ``bt_sessions`` as ONE Dagster run (a single-run backfill of the
    session partitions) on a fresh instance with ``storage`` ("sqlite": the embedded default as
    ``prometheus`` writes it, with PrometheusSqliteEventLogStorage; "sqlite-dagster-default": Dagster's
    own SQLite storage, for comparison; or
    "postgres": dagster-postgres on the local server), against a copy of the warehouse.

    Returns wall seconds, the seconds spent inside the two asset bodies (their
    ``compute_seconds`` metadata: load, engine, warehouse writes) and the rest, Dagster's own
    bookkeeping (run creation, planned events, one materialisation per asset per session).
    """
    import os
    import uuid

    import dagster as dg
    import psycopg
    import yaml
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from prometheus_assets.assets.strategy import RUN_ID_TAG
    from prometheus_assets.cli import configure_event_bookkeeping
    from prometheus_assets.definitions import backtest_job_name, build_definitions
    from prometheus_assets.resources import WarehouseResource

    configure_event_bookkeeping()
    tmp = Path(tempfile.mkdtemp(prefix=f"bench_dagster_{storage}_"))
    db_name = None
    try:
        wh_path = tmp / "warehouse.duckdb"
        shutil.copy(location["duckdb_path"], wh_path)
        configs = tmp / "configs"
        shutil.copytree(ROOT / "configs", configs)
        doc = yaml.safe_load((configs / "strategies.yaml").read_text())
        doc["strategies"][0]["universe_size"] = UNIVERSE_SIZE
        (configs / "strategies.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        markets = yaml.safe_load((configs / "markets.yaml").read_text())
        for m in markets["markets"]:
            m["history_start"] = min(date.fromisoformat(str(m.get("history_start", "2015-01-02"))), all_sessions[0]).isoformat()
        (configs / "markets.yaml").write_text(yaml.safe_dump(markets, sort_keys=False))
        home = tmp / "dagster"
        home.mkdir()
        settings: dict = {"telemetry": {"enabled": False}}
        if storage == "sqlite":
            from prometheus_assets.storage import sqlite_storage_settings

            settings.update(sqlite_storage_settings(str(home)))
        if storage == "postgres":
            db_name = f"prom_bench_dagster_{uuid.uuid4().hex[:8]}"
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
                con.execute(f'CREATE DATABASE "{db_name}"')
            settings["storage"] = {"postgres": {"postgres_db": {
                "hostname": "127.0.0.1", "port": 5432, "username": "postgres", "password": "",
                "db_name": db_name, "scheme": "postgresql+psycopg2"}}}
        (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
        os.environ["DAGSTER_HOME"] = str(home)
        defs = build_definitions(str(configs), WarehouseResource(backend="duckdb", duckdb_path=str(wh_path)))
        job = defs.resolve_job_def(backtest_job_name(STRATEGY_ID))
        with dg.DagsterInstance.get() as instance:
            t0 = time.perf_counter()
            result = job.execute_in_process(
                instance=instance, raise_on_error=True,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                tags={ASSET_PARTITION_RANGE_START_TAG: bt_sessions[0].isoformat(),
                      ASSET_PARTITION_RANGE_END_TAG: bt_sessions[-1].isoformat(), RUN_ID_TAG: "bench"},
            )
            wall = time.perf_counter() - t0
            mats = result.get_asset_materialization_events()
            compute: dict[str, float] = {}
            for m in mats:
                meta = m.event_specific_data.materialization.metadata
                compute[m.asset_key.to_user_string()] = float(meta["compute_seconds"].value)
        inside = sum(compute.values())
        return {"wall_s": wall, "compute_s": inside, "bookkeeping_s": wall - inside,
                "materialisations": len(mats), "per_session_asset_ms": (wall - inside) / max(len(mats), 1) * 1e3}
    finally:
        os.environ.pop("DAGSTER_HOME", None)
        shutil.rmtree(tmp, ignore_errors=True)
        if db_name:
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
                con.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


# ---------------------------------------------------------------- (c) vectorbt


def _pivot(frame: pl.DataFrame, column: str, sessions: list[date], ids: list[str]) -> np.ndarray:
    pdf = frame.select("session_date", "instrument_id", column).to_pandas()
    wide = pdf.pivot(index="session_date", columns="instrument_id", values=column)
    wide.index = pd.to_datetime(wide.index)
    return wide.reindex(index=pd.to_datetime(sessions), columns=ids).to_numpy(dtype=float)


def _cap_weights_2d(raw: np.ndarray, chosen: np.ndarray, cap: float) -> np.ndarray:
    """Row-wise ``cap_weights`` (normalise, cap, spread the excess) over a (sessions x instruments) array."""
    w = np.where(chosen, raw, 0.0)
    tot = w.sum(axis=1, keepdims=True)
    w = np.divide(w, tot, out=np.zeros_like(w), where=tot > 0)
    capped = np.zeros_like(chosen)
    active = tot[:, 0] > 0
    for _ in range(chosen.shape[1] + 1):
        over = (w > cap + 1e-15) & ~capped & active[:, None]
        rows = over.any(axis=1)
        if not rows.any():
            break
        capped |= over
        w[capped] = cap
        free = chosen & ~capped
        budget = 1.0 - cap * capped.sum(axis=1)
        ok = rows & free.any(axis=1) & (budget > 0)
        fsum = np.where(free, w, 0.0).sum(axis=1)
        scale = np.where(ok, budget / np.where(fsum > 0, fsum, 1.0), 1.0)
        w = np.where(free & ok[:, None], w * scale[:, None], w)
        active &= ~(rows & ~ok)
    return w


def read_strategy_inputs(location: dict, all_sessions: list[date]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The panel tables the strategy reads (prices, 63-session volatility, style exposures)."""
    with open_warehouse(**location, migrate=False) as wh:
        scope = {"market_id": MARKET_ID}
        start, end = all_sessions[0], all_sessions[-1]
        prices = wh.read_table("prices_daily", start, end, scope, ["session_date", "instrument_id", "close", "volume"])
        vols = wh.read_table("volatility_daily", start, end, scope, ["session_date", "instrument_id", "vol_63d"])
        fac = wh.read_table("instrument_factors_daily", start, end, {**scope, "factor_id": ["MOM", "LOWVOL"]},
                            ["session_date", "instrument_id", "factor_id", "exposure_z"])
    return prices, vols, fac


def strategy_inputs(prices, vols, fac, all_sessions: list[date], ids: list[str]) -> dict[str, np.ndarray]:
    """Per (session x instrument): close, score, 63-session volatility, history and liquidity flags,
    computed vectorised with pandas rolling windows (the baseline's filters, before ranking)."""
    b = strategy_config().baseline
    close = _pivot(prices, "close", all_sessions, ids)
    volume = _pivot(prices, "volume", all_sessions, ids)
    vol63 = _pivot(vols, "vol_63d", all_sessions, ids)
    z_mom = _pivot(fac.filter(pl.col("factor_id") == "MOM"), "exposure_z", all_sessions, ids)
    z_vol = _pivot(fac.filter(pl.col("factor_id") == "LOWVOL"), "exposure_z", all_sessions, ids)
    close_df = pd.DataFrame(close)
    history = close_df.notna().rolling(b.min_history_sessions, min_periods=b.min_history_sessions).sum().to_numpy()
    traded = pd.DataFrame(close * volume)
    n_traded = traded.notna().rolling(b.liquidity_window, min_periods=1).sum().to_numpy()
    sum_traded = traded.rolling(b.liquidity_window, min_periods=1).sum().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        adv = np.where(n_traded * 2 >= b.liquidity_window, sum_traded / np.maximum(n_traded, 1), np.nan)
    if b.momentum_weight == 0:
        score = -b.low_vol_weight * z_vol
    elif b.low_vol_weight == 0:
        score = b.momentum_weight * z_mom
    else:
        score = b.momentum_weight * z_mom - b.low_vol_weight * z_vol
    with np.errstate(invalid="ignore"):
        cand = (np.isfinite(close) & (close > 0) & (np.nan_to_num(history) >= b.min_history_sessions)
                & np.isfinite(vol63) & np.isfinite(score) & np.isfinite(adv) & (adv >= b.min_adv_value))
    return {"close": close, "score": score, "vol63": vol63, "candidate": cand}


def vectorized_targets(location: dict, all_sessions: list[date], bt_sessions: list[date],
                       ids: list[str]) -> tuple[np.ndarray, float, float]:
    """The baseline's target weights for every backtest session, vectorised; (weights, read s, compute s)."""
    cfg = strategy_config()
    b = cfg.baseline
    t0 = time.perf_counter()
    prices, vols, fac = read_strategy_inputs(location, all_sessions)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = strategy_inputs(prices, vols, fac, all_sessions, ids)
    cand, score, vol63 = x["candidate"], x["score"], x["vol63"]
    k0 = all_sessions.index(bt_sessions[0])
    cand, score, vol63 = cand[k0:], score[k0:], vol63[k0:]
    order = np.argsort(-np.where(cand, score, -np.inf), axis=1, kind="stable")[:, : cfg.universe_size]
    chosen = np.zeros_like(cand)
    np.put_along_axis(chosen, order, np.take_along_axis(cand, order, axis=1), axis=1)
    inv = 1.0 / np.maximum(np.nan_to_num(vol63, nan=np.inf), b.volatility_floor)
    weights = _cap_weights_2d(inv, chosen, cfg.max_position_weight)
    return weights, read_s, time.perf_counter() - t0


def _targets_matrix(targets: dict, bt_sessions: list[date], ids: list[str]) -> np.ndarray:
    pos = {i: k for k, i in enumerate(ids)}
    out = np.zeros((len(bt_sessions), len(ids)))
    for r, s in enumerate(bt_sessions):
        for iid, w in targets.get(s, {}).items():
            out[r, pos[str(iid)]] = w
    return out


def run_vectorbt(close: pd.DataFrame, size: pd.DataFrame, init_cash: float, fees: float, slippage: float) -> dict:
    import vectorbt as vbt

    kwargs = dict(size_type="targetpercent", group_by=True, cash_sharing=True, call_seq="auto",
                  fees=fees, slippage=slippage, init_cash=init_cash, freq="1D", engine="numba")
    tiny_close = close.iloc[:3, :2].fillna(1.0)
    tiny_size = pd.DataFrame(0.4, index=tiny_close.index, columns=tiny_close.columns)

    def once(c, s):
        pf = vbt.Portfolio.from_orders(c, size=s, **kwargs)
        return pf, pf.value().to_numpy()

    _, compile_s = _timed(lambda: once(tiny_close, tiny_size))
    (pf, value), sim_s = _timed(lambda: once(close, size))
    return {"compile_s": compile_s, "sim_s": sim_s, "value": value, "orders": int(pf.orders.count())}


# ---------------------------------------------------------------- (d) backtrader


def run_backtrader(location: dict, prices: pl.DataFrame, ids: list[str], all_sessions: list[date],
                   sessions: list[date], init_cash: float, fees: float, slippage: float) -> dict:
    """The same strategy in backtrader: one feed per instrument carrying the panel inputs as extra
    lines (score, 63-session volatility, the history/liquidity flag, the raw close), the
    selection (top-K by score, ties by id), capped inverse-volatility weights and
    ``order_target_percent`` in ``Strategy.next``, fills at the close (cheat-on-close), over
    ``sessions`` (the first ones of the backtest; the caller extrapolates). The filters' rolling
    windows are computed with pandas beforehand (cheaper than backtrader's own line indicators, so
    this favours backtrader). Timed: read, inputs, and the run (feeds + engine)."""
    import backtrader as bt

    from prometheus_lib.strategies.baseline import cap_weights

    cfg = strategy_config()
    b = cfg.baseline
    t0 = time.perf_counter()
    panels = read_strategy_inputs(location, all_sessions)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = strategy_inputs(*panels, all_sessions, ids)
    rows = [all_sessions.index(s) for s in sessions]
    inputs_s = time.perf_counter() - t0

    index = pd.to_datetime(sessions)
    wide = {c: _pivot(prices, c, sessions, ids) for c in ("open", "high", "low", "close", "volume")}
    extra = ("close_raw", "score", "vol63", "candidate")

    class PanelFeed(bt.feeds.PandasData):
        lines = extra
        params = tuple((name, -1) for name in extra)

    class BaselineInBacktrader(bt.Strategy):
        def __init__(self):
            self.rejected = 0
            self.targets = {}

        def notify_order(self, order):
            if order.status in (order.Margin, order.Rejected):
                self.rejected += 1

        def next(self):
            score = np.array([d.score[0] for d in self.datas])
            ok = np.array([d.candidate[0] > 0 for d in self.datas])
            vol = np.array([d.vol63[0] for d in self.datas])
            order = np.lexsort((np.arange(len(self.datas)), -np.where(ok, score, -np.inf)))
            chosen = [k for k in order[: cfg.universe_size] if ok[k]]
            w = np.zeros(len(self.datas))
            if chosen:
                w[chosen] = cap_weights(1.0 / np.maximum(vol[chosen], b.volatility_floor), cfg.max_position_weight)
            self.targets[self.datas[0].datetime.date(0)] = w
            value = self.broker.getvalue()
            plan = []
            for k, d in enumerate(self.datas):
                pos = self.getposition(d).size
                px = d.close_raw[0]
                if (pos == 0 and w[k] == 0) or not (px > 0):
                    continue
                plan.append((w[k] * value - pos * px, d, w[k]))
            plan.sort(key=lambda p: p[0])  # sells first, then buys
            for _, d, t in plan:
                self.order_target_percent(d, target=t)

    def go():
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.broker.setcash(init_cash)
        cerebro.broker.set_coc(True)
        cerebro.broker.setcommission(commission=fees)
        cerebro.broker.set_slippage_perc(slippage, slip_open=True, slip_match=True, slip_out=True)
        for j, iid in enumerate(ids):
            df = pd.DataFrame({c: wide[c][:, j] for c in wide}, index=index).ffill().bfill()
            df["close_raw"] = x["close"][rows, j]
            df["score"] = x["score"][rows, j]
            df["vol63"] = x["vol63"][rows, j]
            df["candidate"] = x["candidate"][rows, j].astype(float)
            cerebro.adddata(PanelFeed(dataname=df), name=iid)
        cerebro.addstrategy(BaselineInBacktrader)
        strat = cerebro.run(runonce=True, preload=True)[0]
        return strat, cerebro.broker.getvalue()

    (strat, final), run_s = _timed(go)
    return {"read_s": read_s, "inputs_s": inputs_s, "run_s": run_s, "final": final, "rejected": strat.rejected,
            "targets": strat.targets}


# ---------------------------------------------------------------- main


def cold_child(which: str, location: dict, all_sessions: list[date], bt_sessions: list[date], fees: float) -> dict:
    """One timed run of ``which`` ("ours" or "vectorbt") in this fresh process (the imports untimed)."""
    if which == "ours":
        r = run_library(location, all_sessions, bt_sessions)
        return {"total": r["load_s"] + r["decisions_s"] + r["execution_s"],
                "parts": [r["load_s"], r["decisions_s"], r["execution_s"]], "commission_rate": r["commission_rate"]}
    cfg = strategy_config()
    slip = cfg.execution.slippage.bps / 1e4 if cfg.execution.slippage.model != "none" else 0.0
    with open_warehouse(**location, migrate=False) as wh:
        prices = wh.read_table("prices_daily", all_sessions[0], all_sessions[-1], {"market_id": MARKET_ID})
    ids = sorted(prices["instrument_id"].unique().to_list())
    close = pd.DataFrame(_pivot(prices, "close", bt_sessions, ids), index=pd.to_datetime(bt_sessions), columns=ids)
    weights, read_s, compute_s = vectorized_targets(location, all_sessions, bt_sessions, ids)
    size = pd.DataFrame(np.where(np.isfinite(close.to_numpy()), weights, np.nan), index=close.index, columns=ids)
    v = run_vectorbt(close, size, cfg.portfolios[0].initial_capital, fees, slip)
    return {"total": read_s + compute_s + v["sim_s"], "parts": [read_s, compute_s, v["sim_s"]]}


def cold_runs(args: argparse.Namespace) -> dict[str, list[dict]]:
    """``args.cold`` fresh processes per side, alternating ours / vectorbt; each reports one run.

    Run first, while this process holds no data; vectorbt's fee is our realised commission rate
    from the first of ours.
    """
    out: dict[str, list[dict]] = {"ours": [], "vectorbt": []}
    for _ in range(args.cold):
        for which in out:
            fees = out["ours"][0]["commission_rate"] if out["ours"] else 0.0
            cmd = [sys.executable, __file__, "--instruments", str(args.instruments), "--years", str(args.years),
                   "--work", str(args.work), "--cold-child", which, "--cold-fees", repr(fees)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("COLD ")]
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"cold {which} run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            out[which].append(json.loads(lines[-1][5:]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instruments", type=int, default=500)
    p.add_argument("--years", type=int, default=10)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "prom_bench_backtest")
    p.add_argument("--backtrader-years", type=float, default=1.0)
    p.add_argument("--skip-backtrader", action="store_true")
    p.add_argument("--skip-dagster", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of ours and of vectorbt (read + targets + simulation) in this process; medians")
    p.add_argument("--cold", type=int, default=3,
                   help="runs of ours and of vectorbt each in a fresh process, alternating; medians (the goal)")
    p.add_argument("--cold-child", choices=("ours", "vectorbt"), help=argparse.SUPPRESS)
    p.add_argument("--cold-fees", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.repeat < 1 or args.cold < 0:
        p.error("--repeat must be >= 1 and --cold >= 0")

    if args.cold_child:
        with contextlib.redirect_stdout(io.StringIO()):  # the cached-market line
            location, all_sessions, bt_sessions = build_market(args.work, args.instruments, args.years)
        print("COLD " + json.dumps(cold_child(args.cold_child, location, all_sessions, bt_sessions, args.cold_fees)))
        return

    location, all_sessions, bt_sessions = build_market(args.work, args.instruments, args.years)
    n = len(bt_sessions)
    print(f"backtest: {STRATEGY_ID} (universe {UNIVERSE_SIZE}), {args.instruments} instruments, "
          f"{n} sessions {bt_sessions[0]}..{bt_sessions[-1]} (+{len(all_sessions) - n} warm-up), daily rebalance\n")

    # cold runs first, each in a fresh process, while this one holds no data
    cold = cold_runs(args) if args.cold else None

    # (a) ours, --repeat times (each a fresh load); the medians are reported
    runs = []
    for _ in range(args.repeat):
        ours = None  # let the previous run's data go first
        ours = run_library(location, all_sessions, bt_sessions)
        runs.append({k: ours[k] for k in ("load_s", "decisions_s", "execution_s", "frames_s")})
    ours.update({k: _median(r[k] for r in runs) for k in runs[0]})
    ours_totals = [r["load_s"] + r["decisions_s"] + r["execution_s"] for r in runs]
    ours_s = _median(ours_totals)
    ids = list(ours["data"].index.ids)
    cfg = strategy_config()
    init_cash = cfg.portfolios[0].initial_capital
    slip = cfg.execution.slippage.bps / 1e4 if cfg.execution.slippage.model != "none" else 0.0
    fees = ours["commission_rate"]

    # (b) dagster (hook)
    dagster = {} if args.skip_dagster else {
        s: time_dagster_backfill(location, all_sessions, bt_sessions, storage=s)
        for s in ("sqlite", "sqlite-dagster-default", "postgres")
    }

    # (c) vectorbt: same targets (ours), and the same targets computed vectorised
    ours_w = _targets_matrix(ours["targets"], bt_sessions, ids)
    vec_runs = [vectorized_targets(location, all_sessions, bt_sessions, ids) for _ in range(args.repeat)]
    vec_w = vec_runs[-1][0]
    vec_read_s, vec_compute_s = _median(r[1] for r in vec_runs), _median(r[2] for r in vec_runs)
    agree = np.abs(vec_w - ours_w).max(axis=1) < 1e-9
    with open_warehouse(**location, migrate=False) as wh:
        prices = wh.read_table("prices_daily", all_sessions[0], all_sessions[-1], {"market_id": MARKET_ID})
    close = pd.DataFrame(_pivot(prices, "close", bt_sessions, ids), index=pd.to_datetime(bt_sessions), columns=ids)
    size = pd.DataFrame(np.where(np.isfinite(close.to_numpy()), ours_w, np.nan), index=close.index, columns=ids)
    vbt_runs = [run_vectorbt(close, size, init_cash, fees, slip) for _ in range(args.repeat)]
    vbt = {**vbt_runs[0], "sim_s": _median(r["sim_s"] for r in vbt_runs)}  # compile_s: the warm-up of the first
    vbt_totals = [r[1] + r[2] + v["sim_s"] for r, v in zip(vec_runs, vbt_runs)]
    vbt_total = _median(vbt_totals)

    # (d) backtrader on a subset, extrapolated
    btr = None
    if not args.skip_backtrader:
        m = min(n, max(1, round(252 * args.backtrader_years)))
        btr = run_backtrader(location, prices, ids, all_sessions, bt_sessions[:m], init_cash, fees, slip)
        same = sum(np.abs(btr["targets"][s] - ours_w[r]).max() < 1e-9 for r, s in enumerate(bt_sessions[:m]))
        btr.update(sessions=m, same_targets=same,
                   extrap_s=btr["read_s"] + btr["inputs_s"] + btr["run_s"] * n / m)

    # ---- report
    def line(name, secs, note="", vs_vbt=True, vs_bt=True):
        if secs is None:
            print(f"{name:<50}{'not measured':>10}{'':>12}{'':>11}{'':>12}  {note}")
            return
        r_vbt = f"{secs / vbt_total:.2f}x" if vs_vbt else ""
        r_bt = f"{btr['extrap_s'] / secs:.1f}x" if (btr and vs_bt) else ""
        print(f"{name:<50}{secs:>10.2f}{n / secs:>12,.0f}{r_vbt:>11}{r_bt:>12}  {note}")

    print(f"{'':<50}{'seconds':>10}{'sessions/s':>12}{'vs vbt':>11}{'bt/this':>12}")
    line("ours: BacktestData.load", ours["load_s"], vs_vbt=False, vs_bt=False)
    line("ours: run_decisions", ours["decisions_s"], vs_vbt=False, vs_bt=False)
    line("ours: run_execution", ours["execution_s"], f"{ours['orders']:,} orders, {ours['fills']:,} fills",
         vs_vbt=False)
    line("ours: library loop (load+decisions+execution)", ours_s)
    print(f"{'  (rows -> typed frames, not in the loop)':<50}{ours['frames_s']:>10.2f}{'':>12}{'':>11}{'':>12}  "
          f"{ours['rows']:,} rows")
    for s, d in dagster.items():
        line(f"dagster: one-run backfill, {s} storage", d["wall_s"],
             f"{d['materialisations']:,} materialisations; asset bodies {d['compute_s']:.1f} s "
             f"(load, engine, warehouse writes); bookkeeping {d['bookkeeping_s']:.1f} s = "
             f"{d['per_session_asset_ms']:.1f} ms per session-asset", vs_vbt=False)
    line("vectorbt: read panel tables", vec_read_s, vs_vbt=False, vs_bt=False)
    line("vectorbt: targets, vectorised pandas/numpy", vec_compute_s,
         f"same as ours at {agree.sum():,}/{n:,} sessions (max |dw| {np.abs(vec_w - ours_w).max():.1e})",
         vs_vbt=False, vs_bt=False)
    line("vectorbt: from_orders + value (our targets)", vbt["sim_s"], f"{vbt['orders']:,} orders; engine numba",
         vs_vbt=False)
    print(f"{'  (numba compile/cache load, warm-up)':<50}{vbt['compile_s']:>10.2f}{'':>12}{'':>11}{'':>12}  "
          "excluded from the vectorbt rows")
    line("vectorbt: total (read+targets+simulation)", vbt_total)
    if btr:
        line("backtrader: read panel tables", btr["read_s"], vs_vbt=False, vs_bt=False)
        line("backtrader: filter inputs (pandas rolling)", btr["inputs_s"], vs_vbt=False, vs_bt=False)
        print(f"{'backtrader: run (feeds, strategy, engine), measured':<50}{btr['run_s']:>10.2f}"
              f"{btr['sessions'] / btr['run_s']:>12,.1f}{'':>11}{'':>12}  {btr['sessions']} sessions, "
              f"{btr['rejected']} orders rejected; targets as ours at {btr['same_targets']}/{btr['sessions']} sessions")
        line(f"backtrader: total, run EXTRAPOLATED x{n / btr['sessions']:.2f} to {n} sessions", btr["extrap_s"],
             "read + inputs + run x sessions ratio (linear extrapolation of the run)", vs_bt=False)
    else:
        print("backtrader: skipped")

    k = btr["sessions"] - 1 if btr else None
    print(f"\nfinal equity: ours {ours['equity'][-1]:,.0f}  vectorbt {vbt['value'][-1]:,.0f}"
          + (f"   after {btr['sessions']} sessions: ours {ours['equity'][k]:,.0f}  vectorbt {vbt['value'][k]:,.0f}  "
             f"backtrader {btr['final']:,.0f}" if btr else ""))
    print(f"(vectorbt/backtrader fees {fees * 1e4:.2f} bps = our realised commission rate; slippage {slip * 1e4:.1f} bps; "
          f"no volume cap, lots or minimum trade in the peers)")

    print(f"\n(rows above: medians of {args.repeat} runs in this process, each stage its own median; totals: ours "
          f"{', '.join(f'{t:.2f}' for t in ours_totals)} s, vectorbt {', '.join(f'{t:.2f}' for t in vbt_totals)} s; "
          f"in-process ratio {ours_s / vbt_total:.2f}x)")
    if cold:
        def show(runs):
            return ", ".join(f"{r['total']:.2f} ({' + '.join(f'{x:.2f}' for x in r['parts'])})" for r in runs)
        ours_cold, vbt_cold = (_median(r["total"] for r in cold[k]) for k in ("ours", "vectorbt"))
        print(f"cold runs, each in a fresh process, alternating (imports untimed): ours {show(cold['ours'])} s; "
              f"vectorbt {show(cold['vectorbt'])} s")
        ratio = ours_cold / vbt_cold
        print(f"\ngoal: library loop within 2x of vectorbt        cold medians {ours_cold:.2f} s vs {vbt_cold:.2f} s = "
              f"{ratio:.2f}x  {'PASS' if ratio <= 2 else 'MISS'}")
    else:
        ratio = ours_s / vbt_total
        print(f"\ngoal: library loop within 2x of vectorbt        {ours_s:.2f} s vs {vbt_total:.2f} s = {ratio:.2f}x  "
              f"{'PASS' if ratio <= 2 else 'MISS'}  (in-process medians; --cold 0)")
    print(f"      (engine only: run_execution {ours['execution_s']:.2f} s vs from_orders {vbt['sim_s']:.2f} s = "
          f"{ours['execution_s'] / vbt['sim_s']:.1f}x)")
    if btr:
        speed = btr["extrap_s"] / ours_s
        print(f"goal: >= 20x faster than backtrader (extrapolated) {btr['extrap_s']:.1f} s / {ours_s:.2f} s = {speed:.1f}x  "
              f"{'PASS' if speed >= 20 else 'MISS'}")
        print(f"      (strategy + engine in the loop: backtrader run / (run_decisions + run_execution) = "
              f"{btr['run_s'] * n / btr['sessions'] / (ours['decisions_s'] + ours['execution_s']):.1f}x)")
    else:
        print("goal: >= 20x faster than backtrader            not measured (--skip-backtrader)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB; "
          f"finished {datetime.now():%H:%M:%S}")

    if args.profile:
        profile_library(location, all_sessions, bt_sessions)


if __name__ == "__main__":
    main()
