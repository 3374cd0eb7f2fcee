"""The backtest loop: strategy decisions and execution, session by session, state carried T-1 -> T.

``BacktestData`` holds what a run reads (a ``TimeMachine`` over the panels and prices, the
instrument index and reference data); ``run_decisions`` runs the strategy over a session range
and returns the rows of the strategy tables; ``run_execution`` runs the book over the same range
from a starting ``BookState`` and returns the rows of the execution and backtest tables plus the
book at the end. Both are plain library calls: the Dagster assets wrap them, and the benchmark
times them alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from prometheus_lib.backtest.columnar import columnar_supported, paused_gc, run_execution_columnar
from prometheus_lib.config.models import PortfolioConfig, StrategyConfig
from prometheus_lib.errors import DataValidationError
from prometheus_lib.execution.api import ExecutionRecords, apply_execution_plan
from prometheus_lib.execution.backtest_broker import BacktestBroker
from prometheus_lib.execution.corporate_actions import (
    CORPORATE_ACTION_COLUMNS,
    CorporateAction,
    corporate_actions_from_frame,
    tradable_targets,
)
from prometheus_lib.execution.domain import (
    Fill,
    FillId,
    InstrumentId,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    OrderId,
    PortfolioId,
    Position,
    TimeInForce,
)
from prometheus_lib.execution.market import InstrumentIndex, MarketSnapshot
from prometheus_lib.execution.planner import OrderPlanner
from prometheus_lib.execution.time_machine import TimeMachine
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.strategies.baseline import ENGINE_NAME, STYLE_FACTORS, BaselineStrategy, reasons_of, risk_json

if TYPE_CHECKING:
    from prometheus_lib.storage.warehouse import Warehouse

MODE = "BACKTEST"
SCORES = "instrument_scores"
PANEL_TABLES = ("prices_daily", "returns_daily", "volatility_daily", "instrument_factors_daily", "factors_daily")
# Only the columns a backtest reads (instrument_factors_daily alone is 5 M rows at 500 x 10 y).
PANEL_COLUMNS = {
    # high and low are not read: fills are at the open or the close (daily bars give no path)
    "prices_daily": ("instrument_id", "session_date", "open", "close", "volume"),
    "returns_daily": ("instrument_id", "session_date", "return_simple"),
    "volatility_daily": ("instrument_id", "session_date", "vol_21d", "vol_63d"),
    "instrument_factors_daily": ("instrument_id", "session_date", "factor_id", "beta", "exposure_z"),
    "factors_daily": ("factor_id", "session_date", "factor_return"),
}
# ... and only the rows it reads: exposures and betas of the style factors (not the sector ones).
PANEL_SCOPES = {"instrument_factors_daily": {"factor_id": STYLE_FACTORS}}
# Splits, dividends and delistings, applied to the book on their ex-date (execution/corporate_actions.py).
CORPORATE_ACTIONS = "corporate_actions"


@dataclass
class BacktestData:
    """Everything a backtest reads, loaded once, served point-in-time by ``tm``.

    ``has_corporate_actions`` says whether table ``corporate_actions`` has rows: without any (a
    file or yfinance source) the engines skip the corporate-action steps altogether.
    """

    tm: TimeMachine
    index: InstrumentIndex
    sectors: dict[str, str | None]
    lot_sizes: dict[InstrumentId, int]
    has_corporate_actions: bool = False
    # delisted instruments known at the current session, keyed by how many action rows are known
    _delisted: tuple[int, frozenset[str]] = field(default=(0, frozenset()), repr=False)

    @classmethod
    def from_frames(
        cls,
        sessions: Sequence[date],
        frames: Mapping[str, pl.DataFrame],
        instruments: pl.DataFrame,
    ) -> BacktestData:
        """Build from in-memory frames of the panel tables and the ``instruments`` reference.

        ``frames["corporate_actions"]`` (rows of that table, optional) is validated here and
        served like the panels: an action is known from its ex-date session on.

        Raises
        ------
        DataValidationError
            If a panel table is missing or a corporate action is not valid (named by its id).
        """
        tm = TimeMachine(sessions)
        for name in PANEL_TABLES:
            if name not in frames:
                raise DataValidationError(f"backtest data is missing table {name!r}; need {PANEL_TABLES}")
            tm.register(name, frames[name])
        if SCORES in frames:  # the assessment's scores, for a strategy whose score_source is "assessment"
            tm.register(SCORES, frames[SCORES])
        actions = frames.get(CORPORATE_ACTIONS)
        if actions is None:
            actions = pl.DataFrame(schema={c: get_table(CORPORATE_ACTIONS).polars_schema[c]
                                           for c in CORPORATE_ACTION_COLUMNS})
        corporate_actions_from_frame(actions)  # validated once, at load
        tm.register(CORPORATE_ACTIONS, actions.select(CORPORATE_ACTION_COLUMNS))
        ids = sorted(frames["prices_daily"]["instrument_id"].unique().to_list())
        index = InstrumentIndex.of(ids)
        ref = {r["instrument_id"]: r for r in instruments.iter_rows(named=True)}
        sectors = {i: (ref.get(i) or {}).get("sector") for i in ids}
        lots = {InstrumentId(i): int((ref.get(i) or {}).get("lot_size") or 1) for i in ids}
        return cls(tm, index, sectors, lots, has_corporate_actions=not actions.is_empty())

    @classmethod
    def load(
        cls,
        warehouse: Warehouse,
        *,
        market_id: str,
        sessions: Sequence[date],
        scores: tuple[str, str] | None = None,
    ) -> BacktestData:
        """Read the panel tables of ``market_id`` for ``sessions`` (history included) from ``warehouse``.

        ``scores = (run_id, strategy_id)`` also serves that run's ``instrument_scores`` (the
        assessment's), point-in-time like the panels.
        """
        start, end = sessions[0], sessions[-1]
        frames = {
            # in session order, the order the TimeMachine keeps them in
            name: warehouse.read_table(name, start=start, end=end, scope={"market_id": market_id,
                                       **PANEL_SCOPES.get(name, {})}, columns=cols, order_by=("session_date",))
            for name, cols in PANEL_COLUMNS.items()
        }
        if scores is not None:
            frames[SCORES] = warehouse.read_table(
                SCORES, start=start, end=end, scope={"run_id": scores[0], "strategy_id": scores[1]},
                columns=("instrument_id", "session_date", "score"), order_by=("session_date",))
        if frames["prices_daily"].is_empty():
            raise DataValidationError(
                f"no prices_daily rows for market {market_id} between {start} and {end}: ingest them first"
            )
        # the market's corporate actions whose ex-date is in the range, served point-in-time as the prices are
        frames[CORPORATE_ACTIONS] = warehouse.read_table(
            CORPORATE_ACTIONS, start=start, end=end, scope={"market_id": market_id},
            columns=CORPORATE_ACTION_COLUMNS, order_by=("session_date", "action_id"),
        )
        instruments = warehouse.read_table("instruments", scope={"market_id": market_id})
        return cls.from_frames(sessions, frames, instruments)

    def corporate_actions(self) -> tuple[CorporateAction, ...]:
        """The corporate actions whose ex-date is the TimeMachine's current session, in the order they apply."""
        if not self.has_corporate_actions:
            return ()
        today = self.tm.read(CORPORATE_ACTIONS, start=self.tm.current)
        return corporate_actions_from_frame(today) if not today.is_empty() else ()

    def delisted(self) -> frozenset[str]:
        """The instruments delisted at or before the TimeMachine's current session (not tradable)."""
        if not self.has_corporate_actions:
            return frozenset()
        known = self.tm.read(CORPORATE_ACTIONS)
        if known.height != self._delisted[0]:  # the rows known changed: the session moved
            gone = known.filter(pl.col("action_type") == "DELISTING")["instrument_id"].to_list()
            self._delisted = (known.height, frozenset(gone))
        return self._delisted[1]

    def snapshot(self) -> MarketSnapshot:
        """The market snapshot of the TimeMachine's current session."""
        tm, idx = self.tm, self.index
        row = {f: tm.matrix("prices_daily", f, idx)[-1] for f in ("open", "close", "volume")}
        vol = tm.matrix("volatility_daily", "vol_21d", idx)[-1] / math.sqrt(252.0)
        unknown = np.full(len(idx), np.nan)  # high/low: no fill rule reads them (see PANEL_COLUMNS)
        halted = np.zeros(len(idx), dtype=bool)
        return MarketSnapshot(tm.current, idx, high=unknown, low=unknown, daily_volatility=vol, halted=halted, **row)


# ---------------------------------------------------------------- decisions


@dataclass
class DecisionRows:
    """Rows of the strategy tables over a range.

    The two per-instrument tables (instrument_scores, universe_members: one row per instrument
    per session) are kept as per-session arrays and become frames in one go; the others are
    one or a few rows per session.
    """

    ids: tuple[str, ...] = ()
    strategy_id: str = ""
    market_id: str = ""
    run_id: str = ""
    config_hash: str = ""
    horizon: int = 1
    per_session: list[tuple] = field(default_factory=list)
    universes: list[dict] = field(default_factory=list)
    portfolio_id: str = ""
    created_at: datetime | None = None
    # per session: (session, instrument positions, their target weights), the non-zero ones
    targets: list[tuple[date, np.ndarray, np.ndarray]] = field(default_factory=list)
    portfolio_risk_reports: list[dict] = field(default_factory=list)
    engine_decisions: list[dict] = field(default_factory=list)
    decision_outcomes: list[dict] = field(default_factory=list)

    def frames(self) -> dict[str, pl.DataFrame]:
        """Return a frame per table, typed by the catalogue."""
        stacked = self._stacked()  # built once for both per-instrument tables
        out = {"instrument_scores": self._scores(stacked), "universe_members": self._members(stacked)}
        out["target_portfolios"] = self._target_portfolios()
        for name in ("universes", "portfolio_risk_reports", "engine_decisions", "decision_outcomes"):
            out[name] = _frame(name, getattr(self, name))
        return {name: out[name] for name in DECISION_TABLE_ORDER}

    def _stacked(self) -> pl.DataFrame:
        n = len(self.ids)
        if not self.per_session:
            return pl.DataFrame()
        sessions, scores, z_mom, z_vol, included, candidates, masks, labels = zip(*self.per_session)
        label_of = {}
        for session_labels, session_masks in zip(labels, masks):
            for m in np.unique(session_masks):
                label_of.setdefault((session_labels, int(m)), json.dumps(reasons_of(int(m), session_labels)) if m else None)
        reasons = [label_of[(lab, int(m))] for lab, ms in zip(labels, masks) for m in ms]
        return pl.DataFrame({
            "instrument_id": pl.Series(np.tile(np.array(self.ids, dtype=object), len(sessions)), dtype=pl.String),
            "session_date": pl.Series(np.repeat(np.array(sessions, dtype="datetime64[D]"), n)).cast(pl.Date),
            "score": np.concatenate(scores),
            "z_mom": np.concatenate(z_mom),
            "z_lowvol": np.concatenate(z_vol),
            "included": np.concatenate(included),
            "candidate": np.concatenate(candidates),
            "reasons_json": pl.Series(reasons, dtype=pl.String),
        }).with_columns(pl.col("score", "z_mom", "z_lowvol").fill_nan(None))

    def _target_portfolios(self) -> pl.DataFrame:
        schema = get_table("target_portfolios").polars_schema
        if not self.targets:
            return pl.DataFrame(schema=schema)
        sessions, ks, weights = zip(*self.targets)
        counts = [len(k) for k in ks]
        ids = np.array(self.ids, dtype=object)
        frame = pl.DataFrame({
            "session_date": pl.Series(np.repeat(np.array(sessions, dtype="datetime64[D]"), counts)).cast(pl.Date),
            "instrument_id": pl.Series(ids[np.concatenate(ks)], dtype=pl.String),
            "target_weight": np.concatenate(weights),
        })
        return frame.select(
            pl.lit(self.portfolio_id).alias("portfolio_id"), "session_date", "instrument_id", "target_weight",
            pl.lit(MODE).alias("mode"), pl.lit(self.created_at).alias("created_at"),
            pl.lit(self.config_hash).alias("config_hash"), pl.lit(None, pl.String).alias("metadata"),
            pl.lit(self.run_id).alias("run_id"),
        ).select([pl.col(c).cast(d) for c, d in schema.items()])

    def _scores(self, s: pl.DataFrame) -> pl.DataFrame:
        t = get_table("instrument_scores")
        if s.is_empty():
            return pl.DataFrame(schema=t.polars_schema)
        s = s.filter(pl.col("score").is_not_null())
        frame = s.select(
            pl.lit(self.strategy_id).alias("strategy_id"), "instrument_id", "session_date",
            pl.lit(self.horizon).alias("horizon_sessions"), pl.lit(self.market_id).alias("market_id"),
            pl.lit(None, pl.Float64).alias("expected_return"), "score", pl.lit(None, pl.Float64).alias("confidence"),
            pl.when(pl.col("included")).then(pl.lit("LONG"))
            .when(pl.col("candidate")).then(pl.lit("CANDIDATE")).otherwise(pl.lit("EXCLUDED")).alias("signal_label"),
            pl.struct("z_mom", "z_lowvol").struct.json_encode().alias("components_json"),
            pl.lit(self.config_hash).alias("config_hash"), pl.lit(self.run_id).alias("run_id"),
        )
        return frame.select([pl.col(c).cast(d) for c, d in t.polars_schema.items()])

    def _members(self, s: pl.DataFrame) -> pl.DataFrame:
        t = get_table("universe_members")
        if s.is_empty():
            return pl.DataFrame(schema=t.polars_schema)
        frame = s.select(
            pl.lit(self.strategy_id).alias("strategy_id"), "session_date", "instrument_id", "included", "score",
            pl.when(pl.col("included")).then(pl.lit("CORE")).otherwise(pl.lit(None, pl.String)).alias("tier"),
            "reasons_json", pl.lit(self.run_id).alias("run_id"),
        )
        return frame.select([pl.col(c).cast(d) for c, d in t.polars_schema.items()])


DECISION_TABLE_ORDER = ("instrument_scores", "universes", "universe_members", "target_portfolios",
                        "portfolio_risk_reports", "engine_decisions", "decision_outcomes")


def _frame(table: str, rows: list[dict]) -> pl.DataFrame:
    schema = get_table(table).polars_schema
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema, orient="row" if isinstance(rows[0], tuple) else None)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def run_decisions(
    data: BacktestData,
    strategy: BaselineStrategy,
    portfolio: PortfolioConfig,
    sessions: Sequence[date],
    *,
    run_id: str,
) -> tuple[DecisionRows, dict[date, dict[InstrumentId, float]]]:
    """Run the strategy at every session of ``sessions``; return its rows and target weights."""
    cfg = strategy.config
    chash = strategy.config_hash
    ids = data.index.ids
    created = _now()
    rows = DecisionRows(ids=ids, strategy_id=cfg.strategy_id, market_id=cfg.market_id, run_id=run_id,
                        config_hash=chash, horizon=cfg.rebalance_every_sessions,
                        portfolio_id=portfolio.portfolio_id, created_at=created)
    targets: dict[date, dict[InstrumentId, float]] = {}
    instrument_ids = [InstrumentId(i) for i in ids]
    with paused_gc():  # see columnar.paused_gc
        for session in sessions:
            data.tm.advance_to(session)
            d = strategy.decide(data.tm)
            rows.per_session.append((session, d.scores, d.components["z_mom"], d.components["z_lowvol"],
                                     d.included, d.candidates, d.reason_mask, d.reason_labels))
            rows.universes.append({
                "strategy_id": cfg.strategy_id, "session_date": session, "market_id": cfg.market_id,
                "universe_size": int(d.included.sum()), "config_hash": chash,
                "metadata": json.dumps({"candidates": int(d.candidates.sum()), "instruments": len(ids)}),
                "run_id": run_id,
            })
            held = np.flatnonzero(d.weights)
            held_w = d.weights[held]
            weights = dict(zip([instrument_ids[k] for k in held.tolist()], held_w.tolist()))
            targets[session] = weights
            rows.targets.append((session, held, held_w))
            core, scen, sect, fact = risk_json(d.risk)
            rows.portfolio_risk_reports.append({
                "portfolio_id": portfolio.portfolio_id, "session_date": session, "mode": MODE,
                "created_at": created, "volatility": _num(d.risk["volatility"]), "var_95": _num(d.risk["var_95"]),
                "es_95": _num(d.risk["es_95"]), "var_99": _num(d.risk["var_99"]), "es_99": _num(d.risk["es_99"]),
                "gross_exposure": d.risk["gross_exposure"], "net_exposure": d.risk["net_exposure"],
                "risk_metrics_json": core, "scenario_pnl_json": scen, "exposures_by_sector_json": sect,
                "exposures_by_factor_json": fact, "run_id": run_id,
            })
            top = [ids[k] for k in np.argsort(-d.weights)[:5] if d.weights[k] > 0]
            rows.engine_decisions.append({
                "decision_id": d.decision_id, "engine_name": ENGINE_NAME, "session_date": session,
                "strategy_id": cfg.strategy_id, "market_id": cfg.market_id, "config_hash": chash, "mode": MODE,
                "run_id": run_id, "created_at": created,
                "inputs_json": json.dumps({"candidates": int(d.candidates.sum()), "instruments": len(ids)}),
                "decision_json": json.dumps({
                    "universe_size": int(d.included.sum()), "holdings": len(weights),
                    "gross_weight": float(d.weights.sum()), "top_weights": top,
                }),
            })
            for o in strategy.outcomes(data.tm):
                rows.decision_outcomes.append({
                    "decision_id": o.decision_id, "horizon_sessions": o.horizon_sessions, "outcome_date": o.outcome_date,
                    "engine_name": ENGINE_NAME, "realized_return": _num(o.realized_return), "realized_pnl": None,
                    "metrics_json": json.dumps({
                        "benchmark_return": _num(o.benchmark_return),
                        "excess_return": _num(o.realized_return - o.benchmark_return),
                        "holdings": o.holdings,
                    }),
                    "run_id": run_id, "decision_date": o.decision_date,
                })
    return rows, targets


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------- execution


@dataclass(frozen=True)
class BookState:
    """A book at the close of a session: what session T needs from T-1."""

    as_of: date | None
    cash: float
    positions: dict[InstrumentId, Position]
    peak_equity: float
    month_to_date_shares: float = 0.0
    open_orders: tuple[Order, ...] = ()
    last_prices: dict[InstrumentId, float] = field(default_factory=dict)
    # Fills of the open orders, so a partially filled order resumes its fill numbering.
    open_order_fills: tuple[Fill, ...] = ()

    @classmethod
    def initial(cls, capital: float) -> BookState:
        """A fresh book holding ``capital`` in cash."""
        return cls(None, float(capital), {}, float(capital))


@dataclass
class ExecutionRows:
    """Rows of the execution and backtest tables over a range, and the book at its end.

    The object engine leaves row dicts in ``records`` and ``backtest_trades``; the columnar engine
    leaves whole columns in ``columns`` (table -> column -> values). ``frames`` types either.
    """

    backtest_daily_equity: list[dict]
    final: BookState
    traded_value: list[float]
    records: ExecutionRecords | None = None
    backtest_trades: list[dict] = field(default_factory=list)
    columns: dict[str, dict[str, object]] | None = None

    def frames(self) -> dict[str, pl.DataFrame]:
        """Return a frame per table, typed by the catalogue."""
        if self.columns is not None:
            out = {name: _columns_frame(name, cols) for name, cols in self.columns.items()}
        else:
            records = self.records or ExecutionRecords()
            out = {name: _frame(name, getattr(records, name)) for name in
                   ("orders", "fills", "positions_snapshots", "executed_actions")}
            out["backtest_trades"] = _frame("backtest_trades", self.backtest_trades)
        out["backtest_daily_equity"] = _frame("backtest_daily_equity", self.backtest_daily_equity)
        return {name: out[name] for name in EXECUTION_TABLE_ORDER}


EXECUTION_TABLE_ORDER = ("orders", "fills", "positions_snapshots", "executed_actions", "backtest_trades",
                         "backtest_daily_equity")


def _columns_frame(table: str, columns: Mapping[str, object]) -> pl.DataFrame:
    """A typed frame from whole columns (sequences or numpy arrays) of ``table``."""
    schema = get_table(table).polars_schema
    frame = pl.DataFrame({name: pl.Series(name, values, dtype=schema[name]) for name, values in columns.items()})
    return frame.select([pl.col(c).cast(d) for c, d in schema.items()])


def run_execution(
    data: BacktestData,
    config: StrategyConfig,
    portfolio: PortfolioConfig,
    sessions: Sequence[date],
    targets: Mapping[date, Mapping[InstrumentId, float]],
    *,
    run_id: str,
    start: BookState,
    engine: str = "auto",
) -> ExecutionRows:
    """Run the book through ``sessions``: plan to each session's targets, fill, mark, record.

    ``engine`` "auto" runs the columnar engine (prometheus_lib/backtest/columnar.py) whenever it
    supports the book, else the object engine (``BacktestBroker`` behind
    ``apply_execution_plan``); "objects" and "columnar" force one (both write identical rows).
    """
    if engine not in ("auto", "objects", "columnar"):
        raise DataValidationError(f"engine must be 'auto', 'objects' or 'columnar', was {engine!r}")
    if engine != "objects":
        supported = columnar_supported(data, start, targets)
        if engine == "columnar" and not supported:
            raise DataValidationError(
                "the columnar engine needs MARKET open orders only and every instrument held, ordered or "
                "targeted in the backtest's instrument index; run with engine='objects'"
            )
        if supported:
            return run_execution_columnar(data, config, portfolio, sessions, targets, run_id=run_id, start=start)
    pid = PortfolioId(portfolio.portfolio_id)
    if start.as_of is None:
        broker = BacktestBroker(config.execution, pid, start.cash, portfolio.base_currency,
                                instruments=data.index.ids)
    else:
        broker = BacktestBroker.from_state(
            config.execution, pid, start.cash, start.positions, as_of=start.as_of,
            currency=portfolio.base_currency, instruments=data.index.ids,
            last_prices=start.last_prices, month_to_date_shares=start.month_to_date_shares,
            open_orders=start.open_orders, fills=start.open_order_fills,
        )
    planner = OrderPlanner(config.execution, max_position_weight=config.max_position_weight)
    records = ExecutionRecords()
    trades: list[dict] = []
    equity_rows: list[dict] = []
    traded: list[float] = []
    peak = start.peak_equity
    for session in sessions:
        data.tm.advance_to(session)
        market = data.snapshot()
        decision_id = f"{run_id}:{config.strategy_id}:{session.isoformat()}"
        weights, actions = targets.get(session, {}), ()
        if data.has_corporate_actions:
            weights, actions = tradable_targets(weights, data.delisted()), data.corporate_actions()
        result = apply_execution_plan(
            broker=broker, planner=planner, market=market, target_weights=weights,
            run_id=run_id, decision_id=decision_id, lot_sizes=data.lot_sizes, records=records,
            corporate_actions=actions,
        )
        for f, pnl in zip(result.fills, result.realized_by_fill):
            trades.append({
                "run_id": run_id, "trade_id": str(f.fill_id), "session_date": session,
                "instrument_id": str(f.instrument_id), "side": f.side.value, "quantity": f.quantity,
                "price": f.price, "commission": f.commission, "pnl": _num(pnl),
                "strategy_id": config.strategy_id, "sleeve_id": portfolio.portfolio_id,
            })
        acct = result.account
        equity = acct.equity
        peak = max(peak, equity)
        value = float(sum(f.notional for f in result.fills))
        traded.append(value)
        open_orders = broker.open_orders()
        equity_rows.append({
            "run_id": run_id, "session_date": session, "equity": equity, "cash": acct.cash,
            "drawdown": equity / peak - 1.0,
            "exposure_metrics_json": json.dumps({
                "gross_exposure": acct.gross_exposure, "net_exposure": acct.net_exposure,
                "leverage": acct.gross_exposure / equity if equity > 0 else None,
                "holdings": len(broker.positions()), "traded_value": value,
                "commission": float(sum(f.commission for f in result.fills)),
                "orders": len(result.orders), "fills": len(result.fills),
                "month_to_date_shares": broker.month_to_date_shares, "peak_equity": peak,
                "open_orders": [_order_json(o) for o in open_orders],
            }),
        })
    state = broker.state()
    open_orders = tuple(broker.open_orders())
    open_ids = {o.order_id for o in open_orders}
    final = BookState(
        broker.as_of, state.cash, dict(state.positions), peak, broker.month_to_date_shares,
        open_orders, dict(broker.last_prices()),
        tuple(f for f in broker.fills() if f.order_id in open_ids),
    )
    return ExecutionRows(equity_rows, final, traded, records=records, backtest_trades=trades)


def _order_json(o: Order) -> dict:
    return {
        "order_id": str(o.order_id), "instrument_id": str(o.instrument_id), "side": o.side.value,
        "quantity": o.quantity, "session_date": o.session_date.isoformat(), "order_type": o.order_type.value,
        "time_in_force": o.time_in_force.value, "limit_price": o.limit_price, "stop_price": o.stop_price,
        "status": o.status.value, "filled_quantity": o.filled_quantity,
        "average_fill_price": o.average_fill_price, "decision_id": o.decision_id, "reason": o.reason,
    }


def order_from_json(d: Mapping, portfolio_id: str) -> Order:
    """Rebuild an open order saved in ``backtest_daily_equity.exposure_metrics_json``."""
    return Order(
        order_id=OrderId(d["order_id"]), portfolio_id=PortfolioId(portfolio_id),
        instrument_id=InstrumentId(d["instrument_id"]), side=OrderSide(d["side"]), quantity=d["quantity"],
        session_date=date.fromisoformat(d["session_date"]), order_type=OrderType(d["order_type"]),
        time_in_force=TimeInForce(d["time_in_force"]), limit_price=d["limit_price"], stop_price=d["stop_price"],
        status=OrderStatus(d["status"]), filled_quantity=d["filled_quantity"],
        average_fill_price=d["average_fill_price"], decision_id=d["decision_id"], reason=d.get("reason"),
    )


def load_book_state(warehouse: Warehouse, *, run_id: str, portfolio: PortfolioConfig, before: date) -> BookState:
    """Return the book of ``run_id`` at its last session before ``before`` (fresh when it has none).

    Reads ``backtest_daily_equity`` (cash, peak, month-to-date shares, open orders) and, per
    instrument, its latest ``positions_snapshots`` row up to that session: the open positions'
    rows of that session, and the quantity-0 row written when a position was closed (its
    realised P&L).
    """
    # The JSON is cast to text: PostgreSQL's driver would hand it over already decoded.
    eq = warehouse.query(
        "SELECT session_date, equity, cash, CAST(exposure_metrics_json AS VARCHAR) AS exposure_metrics_json "
        "FROM runtime.backtest_daily_equity "
        f"WHERE run_id = {warehouse.placeholder} AND session_date < {warehouse.placeholder} "
        "ORDER BY session_date DESC LIMIT 1",
        [run_id, before],
    )
    if eq.is_empty():
        return BookState.initial(portfolio.initial_capital)
    row = eq.row(0, named=True)
    as_of = row["session_date"]
    meta = json.loads(row["exposure_metrics_json"] or "{}")
    ph = warehouse.placeholder
    latest = (
        "SELECT p.session_date, p.instrument_id, p.quantity, p.avg_cost, p.market_value, p.realized_pnl "
        "FROM runtime.positions_snapshots p JOIN ("
        "  SELECT instrument_id, max(session_date) AS last_date FROM runtime.positions_snapshots"
        f"  WHERE run_id = {ph} AND portfolio_id = {ph} AND mode = {ph} AND session_date <= {ph}"
        "  GROUP BY instrument_id) m ON p.instrument_id = m.instrument_id AND p.session_date = m.last_date "
        f"WHERE p.run_id = {ph} AND p.portfolio_id = {ph} AND p.mode = {ph} ORDER BY p.instrument_id"
    )
    scope = [run_id, portfolio.portfolio_id, MODE]
    pos = warehouse.query(latest, [*scope, as_of, *scope])
    positions = {}
    last_prices = {}
    for r in pos.iter_rows(named=True):
        iid = InstrumentId(r["instrument_id"])
        if r["session_date"] != as_of and r["quantity"]:
            raise DataValidationError(
                f"backtest run {run_id!r}: {iid} is held at {r['session_date']} but has no positions_snapshots "
                f"row at {as_of}, the book's last session; re-run the run's book from {r['session_date']}"
            )
        positions[iid] = Position(iid, r["quantity"], r["avg_cost"] or 0.0, r["realized_pnl"] or 0.0)
        if r["quantity"] and r["market_value"] is not None:
            px = r["market_value"] / r["quantity"]
            if px > 0:
                last_prices[iid] = px
    opens = tuple(order_from_json(o, portfolio.portfolio_id) for o in meta.get("open_orders", []))
    return BookState(
        as_of, float(row["cash"]), positions, float(meta.get("peak_equity", row["equity"])),
        float(meta.get("month_to_date_shares", 0.0)), opens, last_prices,
        _open_order_fills(warehouse, run_id, portfolio.portfolio_id, opens, as_of),
    )


def _open_order_fills(warehouse: Warehouse, run_id: str, portfolio_id: str, opens: tuple[Order, ...],
                      as_of: date) -> tuple[Fill, ...]:
    partial = {str(o.order_id) for o in opens if o.filled_quantity > 0}
    if not partial:
        return ()
    first = min(o.session_date for o in opens if str(o.order_id) in partial)
    rows = warehouse.read_table("fills", start=first, end=as_of,
                                scope={"run_id": run_id, "portfolio_id": portfolio_id, "mode": MODE})
    return tuple(
        Fill(FillId(r["fill_id"]), OrderId(r["order_id"]), PortfolioId(r["portfolio_id"]),
             InstrumentId(r["instrument_id"]), OrderSide(r["side"]), r["quantity"], r["price"], r["commission"],
             r["session_date"], r["slippage_bps"] or 0.0)
        for r in rows.sort("session_date", "fill_id").iter_rows(named=True) if r["order_id"] in partial
    )


RUN_TABLES = (
    "instrument_scores", "universes", "universe_members", "target_portfolios", "portfolio_risk_reports",
    "engine_decisions", "decision_outcomes", "orders", "fills", "positions_snapshots", "executed_actions",
    "backtest_trades", "backtest_daily_equity", "backtest_runs",
)


def delete_run(warehouse: Warehouse, run_id: str) -> int:
    """Delete every row of backtest run ``run_id`` from the strategy, execution and backtest tables (one transaction)."""
    n = 0
    with warehouse.transaction():
        for name in RUN_TABLES:
            t = get_table(name)
            n += int(warehouse.query(
                f"SELECT count(*) AS n FROM {t.qualified_name} WHERE run_id = {warehouse.placeholder}", [run_id]
            )["n"][0])
            warehouse.execute(f"DELETE FROM {t.qualified_name} WHERE run_id = {warehouse.placeholder}", [run_id])
    return n
