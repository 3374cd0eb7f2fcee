"""The columnar execution engine: ``run_execution``'s fast path for a backtest book.

The object engine (``BacktestBroker`` + ``MarketSimulator`` behind ``apply_execution_plan``) models
every order, fill and position as an immutable, validated value and every order move as a
state-machine transition. That is the broker interface PAPER and LIVE share, and it costs about
130 µs per order: a ten-year daily backtest places ~120,000 of them. A backtest book only ever
trades the planner's MARKET DAY orders (and the remainders a volume cap carries), so this engine
runs the *same rules* on plain floats over the instrument index and writes the rows column by
column:

* the plan is ``OrderPlanner.solve`` (the object engine's planner, minus building ``Order``s);
* fills follow ``MarketSimulator``'s rules through the functions it shares from
  ``prometheus_lib.execution.simulator`` (lot rounding, funding by bisection, the reason texts),
  the same slippage and commission models, and the same position and order arithmetic
  (``position_after``, ``fill_progress`` in ``prometheus_lib.execution.domain``);
* valuations use the same exactly rounded sums, so both engines agree to the bit;
* corporate actions (splits, dividends, delistings) go through the object engine's function,
  ``apply_corporate_actions`` (prometheus_lib/execution/corporate_actions.py), this book standing
  in for the broker's (``holding``, ``set_holding``, ``working_orders``, ``set_order``).

``run_execution`` picks this engine when it can (``columnar_supported``): every carried open order
is a MARKET order and every instrument held, ordered or targeted is in the index; otherwise it
runs the object engine. tests/lib/backtest/test_columnar_engine.py checks that both engines
write identical rows and end with identical books over fill timings, volume caps with carry and
cancel, lots, minimum trades, leverage, the commission and slippage models, halts, missing prices
and resumed books.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timezone
from typing import TYPE_CHECKING

import numpy as np

from prometheus_lib.errors import ExecutionError
from prometheus_lib.execution.corporate_actions import (
    AppliedAction,
    HoldingChange,
    OrderChange,
    apply_corporate_actions,
    check_action_sessions,
    tradable_targets,
)
from prometheus_lib.execution.costs import build_commission_model, build_slippage_model
from prometheus_lib.execution.domain import (
    Fill,
    FillId,
    InstrumentId,
    Money,
    Order,
    OrderId,
    OrderSide,
    OrderStatus,
    OrderType,
    PortfolioId,
    Position,
    TimeInForce,
    fill_progress,
    position_after,
)
from prometheus_lib.execution.planner import OrderPlanner
from prometheus_lib.execution.simulator import (
    buying_power_reason,
    cancelled_reason,
    carried_reason,
    largest_affordable,
    odd_lot_reason,
    round_to_lot,
    untradable_reason,
    volume_cap_reason,
)

if TYPE_CHECKING:
    from prometheus_lib.backtest.runner import BacktestData, BookState, ExecutionRows
    from prometheus_lib.config.models import PortfolioConfig, StrategyConfig

MODE = "BACKTEST"
_SUBMITTED, _PARTIAL, _FILLED, _CANCELLED, _REJECTED = (
    OrderStatus.SUBMITTED.value, OrderStatus.PARTIALLY_FILLED.value, OrderStatus.FILLED.value,
    OrderStatus.CANCELLED.value, OrderStatus.REJECTED.value,
)
_SIDE = {1: OrderSide.BUY, -1: OrderSide.SELL}

# Columns of the execution tables, in the order the object engine writes them.
TABLE_COLUMNS = {
    "orders": ("order_id", "portfolio_id", "session_date", "created_at", "instrument_id", "side", "order_type",
               "time_in_force", "quantity", "limit_price", "stop_price", "status", "mode", "decision_id", "run_id",
               "metadata"),
    "fills": ("fill_id", "order_id", "session_date", "filled_at", "instrument_id", "side", "quantity", "price",
              "commission", "slippage_bps", "portfolio_id", "mode", "run_id", "metadata"),
    "executed_actions": ("action_id", "decision_id", "session_date", "portfolio_id", "instrument_id", "action_type",
                         "quantity", "price", "notional", "mode", "run_id", "created_at", "metadata"),
    "positions_snapshots": ("portfolio_id", "session_date", "instrument_id", "mode", "snapshot_at", "quantity",
                            "avg_cost", "market_value", "unrealized_pnl", "realized_pnl", "run_id", "metadata"),
    "backtest_trades": ("run_id", "trade_id", "session_date", "instrument_id", "side", "quantity", "price",
                        "commission", "pnl", "strategy_id", "sleeve_id"),
}


# The columns that change from row to row; the rest are per session (session_date, its stamp, the
# session's decision id) or constant, and are filled in when the rows become columns.
_ROW_COLUMNS = {
    "orders": ("order_id", "instrument_id", "side", "quantity", "status", "metadata"),
    "fills": ("fill_id", "order_id", "instrument_id", "side", "quantity", "price", "commission", "slippage_bps",
              "metadata"),
    "executed_actions": ("action_id", "decision_id", "instrument_id", "action_type", "quantity", "price", "notional",
                         "metadata"),
    "backtest_trades": ("trade_id", "instrument_id", "side", "quantity", "price", "commission", "pnl"),
}


class _Rows:
    """One table's rows, column by column: a list per varying column and the row count after each session."""

    __slots__ = ("cols", "ends")

    def __init__(self, names: Sequence[str]) -> None:
        self.cols: dict[str, list] = {name: [] for name in names}
        self.ends: list[int] = []

    def appenders(self) -> tuple:
        return tuple(col.append for col in self.cols.values())

    def end_session(self) -> None:
        self.ends.append(len(next(iter(self.cols.values()))))

    def counts(self) -> np.ndarray:
        return np.diff(np.array([0, *self.ends], dtype=np.int64))


def _spread(values: Sequence, counts: np.ndarray) -> list:
    """Each of ``values`` repeated its count of times, as a list."""
    out: list = []
    for v, m in zip(values, counts.tolist()):
        out += [v] * m
    return out


def _jnum(x: float | None) -> str:
    # json.dumps writes a float with float.__repr__ and None as null; the rows must be byte-equal.
    return "null" if x is None else float.__repr__(float(x))


def _jstr(s: str | None) -> str:
    return "null" if s is None else json.dumps(s)


class _Working:
    """A working order: what the object engine's ``Order`` holds, mutable and unvalidated."""

    __slots__ = ("order_id", "k", "sign", "quantity", "session_date", "filled", "average", "reason", "decision_id",
                 "status", "fills")

    def __init__(self, order_id: str, k: int, sign: int, quantity: float, session_date: date,
                 decision_id: str | None, filled: float = 0.0, average: float | None = None,
                 reason: str | None = None, status: str = _SUBMITTED) -> None:
        self.order_id, self.k, self.sign, self.quantity = order_id, k, sign, quantity
        self.session_date, self.decision_id = session_date, decision_id
        self.filled, self.average, self.reason, self.status = filled, average, reason, status
        # (sequence number, fill, session) of the order's fills: Fill objects for a still-open order
        # are built once, at the end (a resumed book needs them to number its next fills)
        self.fills: list[tuple[int, object, date]] = []


def columnar_supported(data: BacktestData, start: BookState, targets: Mapping[date, Mapping]) -> bool:
    """True when the columnar engine can run this book: MARKET open orders only, and every
    instrument held, ordered or targeted in ``data.index``."""
    idx = data.index
    if any(o.order_type is not OrderType.MARKET for o in start.open_orders):
        return False
    names = {str(i) for i in start.positions} | {str(o.instrument_id) for o in start.open_orders}
    for weights in targets.values():
        names.update(str(i) for i in weights)
    return all(idx.position(n) is not None for n in names)


def run_execution_columnar(
    data: BacktestData,
    config: StrategyConfig,
    portfolio: PortfolioConfig,
    sessions: Sequence[date],
    targets: Mapping[date, Mapping[InstrumentId, float]],
    *,
    run_id: str,
    start: BookState,
) -> ExecutionRows:
    """``run_execution`` on the columnar engine; same arguments, same rows, same end book."""
    with paused_gc():
        book = _ColumnarBook(data, config, portfolio, run_id, start)
        for session in sessions:
            book.session(session, targets.get(session, {}))
        return book.result()


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector inside (reference counting still frees everything).

    A ten-year backtest makes millions of small row tuples that form no reference cycles; the
    collector would walk all of them again at every generation-2 pass, about a fifth of the
    run. It is restored (if it was on) when the block ends, normally or not.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _ColumnarBook:
    def __init__(self, data: BacktestData, config: StrategyConfig, portfolio: PortfolioConfig, run_id: str,
                 start: BookState) -> None:
        ex = config.execution
        self.data, self.config, self.ex, self.run_id = data, config, ex, run_id
        self.strategy_id = config.strategy_id
        self.portfolio = portfolio.portfolio_id
        self.currency = Money(0.0, portfolio.base_currency).currency
        self.ids = list(data.index.ids)
        n = len(self.ids)
        self.pos = {iid: k for k, iid in enumerate(self.ids)}
        self.rank = np.argsort(np.argsort(np.array(self.ids, dtype=object), kind="stable"), kind="stable").tolist()
        self.planner = OrderPlanner(ex, max_position_weight=config.max_position_weight)
        # the planner's lot per instrument (its default where data has none), checked once
        self.lots = np.array([self.planner._lot_size(InstrumentId(i), data.lot_sizes) for i in self.ids], dtype=float)
        self.slippage = build_slippage_model(ex.slippage)
        self.commission = build_commission_model(ex.commission)
        self.next_open = ex.fill_at == "next_open"
        self.field = "open" if self.next_open else "close"

        # the book, per instrument; lp is NaN where no price was ever seen
        self.q, self.c, self.r = [0.0] * n, [0.0] * n, [0.0] * n
        self.lp = [math.nan] * n
        self.in_book: dict[int, None] = {}  # instruments with a position entry (flat ones keep realised P&L)
        self.held: dict[int, None] = {}  # instruments with a quantity != 0 (a set that keeps its order)
        for iid, p in start.positions.items():
            k = self.pos[str(iid)]
            if p.instrument_id != iid:
                raise ExecutionError(f"positions[{iid}] holds a position of {p.instrument_id}")
            self.q[k], self.c[k], self.r[k] = p.quantity, p.average_cost, p.realized_pnl
            self.in_book[k] = None
            if p.quantity != 0.0:
                self.held[k] = None
        for iid, px in start.last_prices.items():
            self.lp[self.pos[str(iid)]] = float(px)
        self.cash = float(start.cash)
        self.as_of = start.as_of
        self.month = (start.as_of.year, start.as_of.month) if start.as_of is not None else None
        self.month_shares = float(start.month_to_date_shares)
        self.peak = start.peak_equity
        self.fill_seq = 0
        self.working: list[_Working] = []
        by_order: dict[str, list[Fill]] = {}
        for f in start.open_order_fills:
            by_order.setdefault(str(f.order_id), []).append(f)
        for o in start.open_orders:
            w = _Working(str(o.order_id), self.pos[str(o.instrument_id)], o.side.sign, o.quantity, o.session_date,
                         o.decision_id, o.filled_quantity, o.average_fill_price, o.reason, o.status.value)
            for f in by_order.get(w.order_id, []):
                w.fills.append((self._next_seq(), f, f.session_date))
            self.working.append(w)
        self.fill_counts = {oid: len(fs) for oid, fs in by_order.items()}

        # rows as columns: a list per column that changes from row to row, and the sessions' row counts for
        # the per-session and constant ones (no tuple per row: millions of them would cost a cyclic-GC pass
        # over all of them when the collector is turned back on, and a transpose)
        self.rows = {t: _Rows(cols) for t, cols in _ROW_COLUMNS.items()}
        self.recorded: list[tuple[date, datetime, str]] = []  # (session, stamp, decision id) per session
        # positions_snapshots: per-session arrays in self.snapshots
        self.snapshots: list[tuple] = []  # per session: column arrays of positions_snapshots
        self.equity_rows: list[dict] = []
        self.traded: list[float] = []

    def _next_seq(self) -> int:
        self.fill_seq += 1
        return self.fill_seq

    # ------------------------------------------------------------ one session

    def session(self, session: date, weights: Mapping[InstrumentId, float]) -> None:
        data, run_id, pf = self.data, self.run_id, self.portfolio
        data.tm.advance_to(session)
        market = data.snapshot()
        if self.as_of is not None and session < self.as_of:
            raise ExecutionError(
                f"portfolio {pf}: sessions must be processed in order; got {session} after {self.as_of}"
            )
        close = market.close.tolist()
        stamp = datetime.combine(session, time(21, 0), tzinfo=timezone.utc)
        q_before, r_before, held_before = self.q[:], self.r[:], list(self.held)
        decision_id = f"{run_id}:{self.strategy_id}:{session.isoformat()}"
        fills: list[tuple] = []
        carried = list(self.working)  # working since an earlier session: a cancel this session is recorded too
        applied: list[AppliedAction] = []
        if data.has_corporate_actions:
            # the session's corporate actions, on the book of T-1 before anything fills (the object
            # engine's BacktestBroker.apply_corporate_actions; the rules are in corporate_actions.py)
            weights = tradable_targets(weights, data.delisted())
            actions = data.corporate_actions()
            if actions:
                check_action_sessions(actions, self.as_of, pf)
                applied = apply_corporate_actions(actions, self)
                self.working = [w for w in self.working if w.status in (_SUBMITTED, _PARTIAL)]
                q_before, r_before = self.q[:], self.r[:]  # fills split realised P&L from here
        if self.next_open:
            fills.extend(self._execute(market, session))
        self._mark(close, session)

        # the plan: the book plus what working orders will still trade, at the session's closes
        cur = {k: self.q[k] for k in self.held}
        avg = {k: self.c[k] for k in cur}
        pending = 0.0
        for w in self.working:
            px = close[w.k]
            if not (math.isfinite(px) and px > 0):
                continue
            qty = w.sign * max(w.quantity - w.filled, 0.0)
            pending += qty * px
            if w.k in cur:
                cur[w.k] = cur[w.k] + qty
            else:
                cur[w.k], avg[w.k] = qty, px
        wanted_of = {}
        for iid, wt in weights.items():
            k = self.pos[str(iid)]
            wt = float(wt)
            if not (math.isfinite(wt) and wt >= 0.0):
                self.planner._target(iid, wt, True)  # raises with the object engine's message
            wanted_of[k] = wt
        plan_ks = sorted({k for k, v in cur.items() if v != 0.0} | set(wanted_of), key=self.rank.__getitem__)
        orders: list[tuple[_Working | None, tuple]] = []
        if plan_ks:
            current = np.array([cur.get(k, 0.0) for k in plan_ks])
            cost = np.array([avg.get(k, 0.0) for k in plan_ks])
            px = np.array([close[k] for k in plan_ks])
            price = np.where(np.isfinite(px) & (px > 0), px, 0.0)
            wanted = np.array([wanted_of.get(k, 0.0) for k in plan_ks])
            solved = self.planner.solve(tuple(self.ids[k] for k in plan_ks), current, cost, self.lots[plan_ks],
                                        wanted, price, self.cash - pending, portfolio_id=PortfolioId(pf))
            delta = solved.delta
            prefix = f"{run_id}:{pf}:{session.isoformat()}:O"
            lot = self.ex.lot_size
            emission = [*np.flatnonzero(delta < 0.0).tolist(), *np.flatnonzero(delta > 0.0).tolist()]
            for n, j in enumerate(emission, start=1):
                d = float(delta[j])
                k, qty, sign = plan_ks[j], abs(d), (1 if d > 0.0 else -1)
                oid = f"{prefix}{n:05d}"
                if qty < lot:  # the broker's one rejection a planned order can meet
                    orders.append((None, (oid, k, sign, qty, f"quantity {qty:g} is below one lot ({lot})")))
                    continue
                w = _Working(oid, k, sign, qty, session, decision_id)
                self.working.append(w)
                orders.append((w, ()))
        if not self.next_open:
            fills.extend(self._execute(market, session))
            self._mark(close, session)

        realized = self._realized_by_fill(fills, q_before, r_before)
        self._record(session, stamp, decision_id, orders, carried, fills, realized, close, held_before, applied)

        # the account after the session, and its equity row
        cash = self.cash
        vals = []
        for k in self.held:
            lp = self.lp[k]
            vals.append(self.q[k] * (lp if lp == lp else self.c[k]))
        positions_value = math.fsum(vals)
        gross = math.fsum(abs(v) for v in vals)
        equity = cash + positions_value
        self.peak = max(self.peak, equity)
        value = float(sum(f[3] * f[4] for f in fills))
        self.traded.append(value)
        self.equity_rows.append({
            "run_id": run_id, "session_date": session, "equity": equity, "cash": cash,
            "drawdown": equity / self.peak - 1.0,
            "exposure_metrics_json": json.dumps({
                "gross_exposure": gross, "net_exposure": positions_value,
                "leverage": gross / equity if equity > 0 else None,
                "holdings": len(vals), "traded_value": value,
                "commission": float(sum(f[5] for f in fills)),
                "orders": len(orders), "fills": len(fills),
                "month_to_date_shares": self.month_to_date_shares, "peak_equity": self.peak,
                "open_orders": [self._order_json(w) for w in self.working],
            }),
        })

    def _mark(self, close: list[float], session: date) -> None:
        lp = self.lp
        for k in self.held:
            c = close[k]
            if c == c and c > 0 and c != math.inf:
                lp[k] = c
        self.as_of = session

    @property
    def month_to_date_shares(self) -> float:
        if self.month is None:
            return 0.0
        if self.as_of is not None and self.month < (self.as_of.year, self.as_of.month):
            return 0.0
        return self.month_shares

    # ------------------------------------------------------------ corporate actions (CorporateActionBook)

    def holding(self, instrument_id: InstrumentId) -> tuple[float, float, float, float]:
        k = self.pos.get(str(instrument_id))
        if k is None:  # outside the index: never held here (columnar_supported)
            return 0.0, 0.0, 0.0, math.nan
        return self.q[k], self.c[k], self.r[k], self.lp[k]

    def set_holding(self, instrument_id: InstrumentId, change: HoldingChange) -> None:
        k = self.pos[str(instrument_id)]
        self.q[k], self.c[k], self.r[k], self.lp[k] = (change.quantity, change.average_cost, change.realized_pnl,
                                                       change.last_price)
        self.cash += change.cash
        self.in_book[k] = None
        if change.quantity != 0.0:
            self.held[k] = None
        else:
            self.held.pop(k, None)

    def working_orders(self, instrument_id: InstrumentId) -> list[tuple]:
        k = self.pos.get(str(instrument_id))
        return [(w, w.quantity, w.filled, w.average, None, None) for w in self.working if w.k == k]

    @staticmethod
    def set_order(handle: _Working, change: OrderChange) -> None:
        if change.cancel_reason is not None:
            handle.status, handle.reason = _CANCELLED, change.cancel_reason
        else:
            handle.quantity, handle.filled, handle.average = (change.quantity, change.filled_quantity,
                                                              change.average_fill_price)

    # ------------------------------------------------------------ fills (MarketSimulator.execute's rules)

    def _execute(self, market, session: date) -> list[tuple]:
        month = (session.year, session.month)
        if self.month != month:
            self.month, self.month_shares = month, 0.0
        ref_l = getattr(market, self.field).tolist()
        volume_l = market.volume.tolist()
        dvol_l = market.daily_volatility.tolist()
        halted_l = market.halted.tolist()
        q, c, r, lp = self.q, self.c, self.r, self.lp
        values = []
        for k in self.held:
            px = ref_l[k]
            if not (math.isfinite(px) and px > 0):
                px = lp[k] if lp[k] == lp[k] else c[k]
            values.append(q[k] * px)
        equity = self.cash + math.fsum(values)
        gross = math.fsum(abs(v) for v in values)

        ex, ids, field, day = self.ex, self.ids, self.field, session
        lot, maxp, lev, carry = ex.lot_size, ex.max_participation, ex.max_leverage, ex.remainder == "carry"
        slippage, commission = self.slippage.fill_price_checked, self.commission.commission_checked
        eligible = (lambda w: w.session_date < day) if self.next_open else (lambda w: w.session_date <= day)
        sequence = [w for w in self.working if w.sign < 0 and eligible(w)]
        sequence += [w for w in self.working if w.sign > 0 and eligible(w)]
        volume_left: dict[int, float] = {}
        fills: list[tuple] = []
        for w in sequence:
            k = w.k
            iid = ids[k]
            ref, volume, vola = ref_l[k], volume_l[k], dvol_l[k]
            blocked = untradable_reason(iid, field, day, ref, halted_l[k], volume)
            if blocked is not None:
                self._carry_or_cancel(w, blocked, carry)
                continue
            wanted = max(w.quantity - w.filled, 0.0)
            capped, volume_reason = wanted, None
            if maxp is not None and math.isfinite(volume):
                left = volume_left.setdefault(k, maxp * volume)
                if left < wanted:
                    capped = max(left, 0.0)
                    volume_reason = volume_cap_reason(maxp, volume, iid, day)
            quantity = round_to_lot(capped, lot)
            if quantity <= 0:
                if volume_reason is not None:
                    self._carry_or_cancel(w, f"no fill: {volume_reason}", carry)
                else:
                    w.status, w.reason = _CANCELLED, odd_lot_reason(wanted, lot)
                continue
            sign = w.sign
            funding_reason = None
            month_shares = self.month_shares
            price, bps = slippage(sign, ref, quantity, volume, vola)
            fee = commission(quantity, price, month_shares)
            reducing = min(quantity, max(-sign * q[k], 0.0))
            if quantity > reducing:
                budget = max(equity * lev - gross, 0.0)
                # MarketSimulator's test, affordable(quantity), on the price and fee just computed
                if not ((quantity - reducing) * price + fee <= budget):

                    def affordable(shares: float) -> bool:
                        if shares <= reducing:
                            return True
                        fp, _ = slippage(sign, ref, shares, volume, vola)
                        return (shares - reducing) * fp + commission(shares, fp, month_shares) <= budget

                    funded = largest_affordable(quantity, reducing, lot, affordable)
                    funding_reason = buying_power_reason(budget, self.currency, funded, quantity, iid, lev)
                    quantity = funded
                    if quantity <= 0:
                        w.status, w.reason = _CANCELLED, funding_reason
                        continue
                    price, bps = slippage(sign, ref, quantity, volume, vola)
                    fee = commission(quantity, price, month_shares)
            n = self.fill_counts.get(w.order_id, 0) + 1
            q0 = q[k]
            q1, c[k], r[k] = position_after(q0, c[k], r[k], w.sign * quantity, price)
            q[k] = q1
            self.in_book[k] = None
            if q1 != 0.0:
                self.held[k] = None
            else:
                self.held.pop(k, None)
            cash_flow = -w.sign * (quantity * price) - fee
            self.cash += cash_flow
            self.month_shares += quantity
            self.fill_counts[w.order_id] = n
            lp[k] = ref
            equity += cash_flow + (q1 - q0) * ref
            gross += (abs(q1) - abs(q0)) * ref
            if k in volume_left:
                volume_left[k] -= quantity
            fill = (f"{w.order_id}-F{n}", w, k, quantity, price, fee, bps)
            fills.append(fill)
            seq = self._next_seq()
            w.filled, w.average, done = fill_progress(w.quantity, w.filled, w.average, quantity, price)
            if done:
                w.status = _FILLED
                continue
            w.status = _PARTIAL
            if funding_reason is not None:
                w.status, w.reason = _CANCELLED, funding_reason
            elif volume_reason is not None:
                self._carry_or_cancel(w, volume_reason, carry)
            else:
                w.status, w.reason = _CANCELLED, odd_lot_reason(max(w.quantity - w.filled, 0.0), lot)
            if w.status == _PARTIAL:  # still working: keep its fills for the end book
                w.fills.append((seq, fill, day))
        self.working = [w for w in self.working if w.status in (_SUBMITTED, _PARTIAL)]
        return fills

    @staticmethod
    def _carry_or_cancel(w: _Working, reason: str, carry: bool) -> None:
        if carry:
            w.reason = carried_reason(reason)
        else:
            w.status, w.reason = _CANCELLED, cancelled_reason(reason)

    def _fill_object(self, f: tuple | Fill, w: _Working, day: date | None) -> Fill:
        if isinstance(f, Fill):
            return f
        fill_id, _, k, quantity, price, fee, bps = f
        return Fill(FillId(fill_id), OrderId(w.order_id), PortfolioId(self.portfolio), InstrumentId(self.ids[k]),
                    _SIDE[w.sign], quantity, price, fee, day, bps)

    def _realized_by_fill(self, fills: list[tuple], q_before: list[float], r_before: list[float]) -> list:
        """``apply_execution_plan``'s split of each instrument's realised P&L move over its reducing fills."""
        out: list[float | None] = [None] * len(fills)
        by_k: dict[int, list[int]] = {}
        for j, f in enumerate(fills):
            by_k.setdefault(f[2], []).append(j)
        for k, js in by_k.items():
            move = self.r[k] - r_before[k]
            qq = q_before[k]
            reducing = []
            for j in js:
                signed = fills[j][1].sign * fills[j][3]
                if qq != 0.0 and (qq > 0) != (signed > 0):
                    reducing.append(j)
                qq += signed
            total = sum(fills[j][3] for j in reducing)
            for j in reducing:
                out[j] = move * fills[j][3] / total if total else 0.0
        return out

    # ------------------------------------------------------------ rows

    def _record(self, session: date, stamp: datetime, decision_id: str, orders: list, carried: list[_Working],
                fills: list[tuple], realized: list, close: list[float], held_before: list[int],
                applied: list[AppliedAction]) -> None:
        ids, rows = self.ids, self.rows
        self.recorded.append((session, stamp, decision_id))
        o_id, o_iid, o_side, o_qty, o_status, o_meta = rows["orders"].appenders()
        a_id, a_dec, a_iid, a_type, a_qty, a_px, a_notional, a_meta = rows["executed_actions"].appenders()
        for ca in applied:  # corporate actions first: they applied before anything else of the session
            a_id(ca.action_id(self.run_id, self.portfolio)), a_dec(decision_id), a_iid(str(ca.action.instrument_id))
            a_type(ca.action_type), a_qty(ca.quantity), a_px(ca.price), a_notional(ca.notional), a_meta(ca.metadata)
        f_id, f_order, f_iid, f_side, f_qty, f_px, f_fee, f_bps, f_meta = rows["fills"].appenders()
        t_id, t_iid, t_side, t_qty, t_px, t_fee, t_pnl = rows["backtest_trades"].appenders()
        for w, rejected in orders:
            if w is None:
                oid, k, sign, qty, reason = rejected
                status, filled = _REJECTED, 0.0
            else:
                oid, k, sign, qty, reason, status, filled = w.order_id, w.k, w.sign, w.quantity, w.reason, w.status, w.filled
            iid = ids[k]
            reason_json = _jstr(reason)
            o_id(oid), o_iid(iid), o_side("BUY" if sign > 0 else "SELL"), o_qty(qty), o_status(status)
            o_meta(f'{{"filled_quantity": {_jnum(filled)}, "reason": {reason_json}}}')
            meta = f'{{"reason": {reason_json}}}'
            kind = "ORDER_REJECTED" if status == _REJECTED else "ORDER_SUBMITTED"
            a_id(f"{oid}:{kind}"), a_dec(decision_id), a_iid(iid), a_type(kind), a_qty(sign * qty), a_px(None)
            a_notional(None), a_meta(meta)
            if status == _CANCELLED:
                a_id(f"{oid}:ORDER_CANCELLED"), a_dec(decision_id), a_iid(iid), a_type("ORDER_CANCELLED")
                a_qty(sign * max(qty - filled, 0.0)), a_px(None), a_notional(None), a_meta(meta)
        for w in carried:
            if w.status == _CANCELLED:
                a_id(f"{w.order_id}:ORDER_CANCELLED"), a_dec(w.decision_id), a_iid(ids[w.k]), a_type("ORDER_CANCELLED")
                a_qty(w.sign * max(w.quantity - w.filled, 0.0)), a_px(None), a_notional(None)
                a_meta(f'{{"reason": {_jstr(w.reason)}}}')
        for f, pnl in zip(fills, realized):
            fill_id, w, k, quantity, price, fee, bps = f
            side = "BUY" if w.sign > 0 else "SELL"
            iid = ids[k]
            f_id(fill_id), f_order(w.order_id), f_iid(iid), f_side(side), f_qty(quantity), f_px(price), f_fee(fee)
            f_bps(bps), f_meta(f'{{"realized_pnl": {_jnum(pnl)}}}')
            a_id(f"{fill_id}:FILL"), a_dec(decision_id), a_iid(iid), a_type("FILL"), a_qty(w.sign * quantity)
            a_px(price), a_notional(quantity * price)
            a_meta(f'{{"order_id": {_jstr(w.order_id)}, "commission": {_jnum(fee)}}}')
            t_id(fill_id), t_iid(iid), t_side(side), t_qty(quantity), t_px(price), t_fee(fee)
            t_pnl(None if pnl is None or not math.isfinite(pnl) else float(pnl))
        for table in rows.values():
            table.end_session()
        # positions: every held instrument at the close (last known close, else average cost),
        # then one quantity-0 row for each position closed this session
        held = sorted(self.held, key=self.rank.__getitem__)
        closed = sorted((k for k in held_before if self.q[k] == 0.0), key=self.rank.__getitem__)
        if held or closed:
            qh = np.array([self.q[k] for k in held])
            ch = np.array([self.c[k] for k in held])
            px = np.array([close[k] for k in held])
            lp = np.array([self.lp[k] for k in held])
            px = np.where(np.isfinite(px) & (px > 0), px, np.where(np.isnan(lp), ch, lp))
            zeros = np.zeros(len(closed))
            self.snapshots.append((
                session, stamp, [ids[k] for k in held] + [ids[k] for k in closed],
                np.concatenate([qh, zeros]), np.concatenate([ch, zeros]), np.concatenate([qh * px, zeros]),
                np.concatenate([qh * (px - ch), zeros]),
                np.array([self.r[k] for k in held] + [self.r[k] for k in closed]),
                [None] * len(held) + ['{"closed": true}'] * len(closed),
            ))

    def _order_json(self, w: _Working) -> dict:
        return {
            "order_id": w.order_id, "instrument_id": self.ids[w.k], "side": "BUY" if w.sign > 0 else "SELL",
            "quantity": w.quantity, "session_date": w.session_date.isoformat(), "order_type": "MARKET",
            "time_in_force": "DAY", "limit_price": None, "stop_price": None, "status": w.status,
            "filled_quantity": w.filled, "average_fill_price": w.average, "decision_id": w.decision_id,
            "reason": w.reason,
        }

    # ------------------------------------------------------------ the result

    def _columns(self) -> dict[str, dict[str, object]]:
        """Every table's columns, in ``TABLE_COLUMNS`` order (positions_snapshots: added by ``result``)."""
        sessions = np.array([s for s, _, _ in self.recorded], dtype="datetime64[D]")
        stamps = [t for _, t, _ in self.recorded]
        each_session = {"created_at": stamps, "filled_at": stamps, "decision_id": [d for _, _, d in self.recorded]}
        constant = {"portfolio_id": self.portfolio, "order_type": "MARKET", "time_in_force": "DAY",
                    "limit_price": None, "stop_price": None, "mode": MODE, "run_id": self.run_id,
                    "strategy_id": self.strategy_id, "sleeve_id": self.portfolio}
        out: dict[str, dict[str, object]] = {}
        for table, rows in self.rows.items():
            counts = rows.counts()
            cols: dict[str, object] = {}
            for name in TABLE_COLUMNS[table]:
                if name in rows.cols:
                    cols[name] = rows.cols[name]
                elif name == "session_date":
                    cols[name] = np.repeat(sessions, counts)
                elif name in each_session:
                    cols[name] = _spread(each_session[name], counts)
                else:
                    cols[name] = [constant[name]] * int(counts.sum())
            out[table] = cols
        return out

    def result(self) -> ExecutionRows:
        from prometheus_lib.backtest.runner import BookState, ExecutionRows

        columns = self._columns()
        snaps = self.snapshots
        sizes = [len(s[2]) for s in snaps]
        stack = (lambda j: np.concatenate([s[j] for s in snaps])) if snaps else (lambda j: np.zeros(0))
        columns["positions_snapshots"] = {
            "portfolio_id": [self.portfolio] * sum(sizes),
            "session_date": np.repeat(np.array([s[0] for s in snaps], dtype="datetime64[D]"), sizes),
            "instrument_id": [i for s in snaps for i in s[2]],
            "mode": [MODE] * sum(sizes),
            "snapshot_at": _spread([s[1] for s in snaps], np.asarray(sizes, dtype=np.int64)),
            "quantity": stack(3), "avg_cost": stack(4), "market_value": stack(5), "unrealized_pnl": stack(6),
            "realized_pnl": stack(7),
            "run_id": [self.run_id] * sum(sizes),
            "metadata": [x for s in snaps for x in s[8]],
        }
        pid = PortfolioId(self.portfolio)
        open_orders = tuple(
            Order(OrderId(w.order_id), pid, InstrumentId(self.ids[w.k]), _SIDE[w.sign], w.quantity, w.session_date,
                  OrderType.MARKET, TimeInForce.DAY, status=OrderStatus(w.status), filled_quantity=w.filled,
                  average_fill_price=w.average, decision_id=w.decision_id, reason=w.reason)
            for w in self.working
        )
        open_fills = tuple(self._fill_object(f, w, day) for _, w, f, day in
                           sorted(((s, w, f, day) for w in self.working for s, f, day in w.fills), key=lambda x: x[0]))
        positions = {InstrumentId(self.ids[k]): Position(InstrumentId(self.ids[k]), self.q[k], self.c[k], self.r[k])
                     for k in self.in_book}
        last_prices = {InstrumentId(self.ids[k]): p for k, p in enumerate(self.lp) if p == p}
        final = BookState(self.as_of, self.cash, positions, self.peak, self.month_to_date_shares, open_orders,
                          last_prices, open_fills)
        return ExecutionRows(
            backtest_daily_equity=self.equity_rows, final=final, traded_value=self.traded,
            columns=columns,
        )
