"""apply_execution_plan: current book + targets -> planned orders -> broker -> fills -> records.

One call per session and book. In BACKTEST mode the broker fills synchronously: with fills at
the close, the plan is made on the session's closes and filled at them; with fills at the next
open, the session first fills the orders planned on the previous close at today's open, then
plans on today's close. The session's corporate actions, if given, apply to the book before
either (``prometheus_lib.execution.corporate_actions``). The function returns the records of everything that happened, in the
row shapes of ``orders``, ``fills``, ``positions_snapshots`` and ``executed_actions`` (all with
``mode`` and ``run_id``); the caller writes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

from prometheus_lib.errors import ExecutionError
from prometheus_lib.execution.backtest_broker import BacktestBroker
from prometheus_lib.execution.broker import BrokerInterface
from prometheus_lib.execution.corporate_actions import CorporateAction
from prometheus_lib.execution.domain import AccountState, ExecutionMode, Fill, InstrumentId, Order, Position
from prometheus_lib.execution.market import MarketSnapshot
from prometheus_lib.execution.planner import OrderPlan, OrderPlanner


@dataclass
class ExecutionRecords:
    """Rows for the execution tables, accumulated over sessions (column-wise dict rows)."""

    orders: list[dict] = field(default_factory=list)
    fills: list[dict] = field(default_factory=list)
    positions_snapshots: list[dict] = field(default_factory=list)
    executed_actions: list[dict] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionExecution:
    """What one session's execution did."""

    session_date: date
    plan: OrderPlan | None
    orders: tuple[Order, ...]
    fills: tuple[Fill, ...]
    account: AccountState
    realized_by_fill: tuple[float | None, ...]


def _stamp(session: date) -> datetime:
    # Backtest records carry the session's date at 21:00 UTC (after the US close) as their time.
    return datetime.combine(session, time(21, 0), tzinfo=timezone.utc)


def apply_execution_plan(
    *,
    broker: BrokerInterface,
    planner: OrderPlanner,
    market: MarketSnapshot,
    target_weights: Mapping[InstrumentId, float],
    run_id: str,
    decision_id: str | None = None,
    lot_sizes: Mapping[InstrumentId, int] | None = None,
    records: ExecutionRecords | None = None,
    corporate_actions: Sequence[CorporateAction] = (),
) -> SessionExecution:
    """Plan, submit and (in BACKTEST mode) fill one session's orders; append their records.

    Parameters
    ----------
    broker
        The book's broker. A ``BacktestBroker`` is processed synchronously for ``market``.
    planner
        Turns the book and the targets into orders.
    market
        The session's snapshot: plan prices are its closes.
    target_weights
        Target weight per instrument (held instruments absent from it are closed).
    run_id
        The backtest run (or live book) the records belong to; part of every order id.
    decision_id
        The engine decision the orders implement.
    lot_sizes
        Lot size per instrument (default: the planner's config).
    records
        Where rows are appended (a new ``ExecutionRecords`` when None).
    corporate_actions
        The corporate actions whose ex-date is the session, applied to a ``BacktestBroker``'s
        book before anything fills (``BacktestBroker.apply_corporate_actions``), each that
        touched the book recorded in ``executed_actions`` first. Targets should already leave
        out delisted instruments (``corporate_actions.tradable_targets``).

    Raises
    ------
    ExecutionError
        If corporate actions are given for a broker that is not a ``BacktestBroker`` (a PAPER or
        LIVE broker applies them itself).
    """
    session = market.session_date
    mode = broker.mode
    stamp = _stamp(session)
    portfolio = str(broker.portfolio_id)
    records = records if records is not None else ExecutionRecords()
    backtest = isinstance(broker, BacktestBroker)
    fills: list[Fill] = []
    next_open = backtest and broker.config.fill_at == "next_open"

    before = dict(broker.state().positions) if backtest else {}
    carried = broker.open_orders()  # working since an earlier session: a cancel this session is recorded too
    before_fills = before
    if corporate_actions:
        if not backtest:
            raise ExecutionError(
                f"corporate actions are applied by a BacktestBroker's book; {type(broker).__name__} of "
                f"portfolio {portfolio} applies its own"
            )
        for applied in broker.apply_corporate_actions(corporate_actions):
            records.executed_actions.append({
                "action_id": applied.action_id(run_id, portfolio), "decision_id": decision_id, "session_date": session,
                "portfolio_id": portfolio, "instrument_id": str(applied.action.instrument_id),
                "action_type": applied.action_type, "quantity": applied.quantity, "price": applied.price,
                "notional": applied.notional, "mode": mode.value, "run_id": run_id, "created_at": stamp,
                "metadata": applied.metadata,
            })
        # fills split realised P&L from here: a split's cash in lieu is not a fill's
        before_fills = dict(broker.state().positions)
    if next_open:
        fills.extend(broker.process_fills(market))
    elif backtest:
        broker.mark(market)
    account = broker.account_state()
    positions, pending_value = _with_working_orders(broker.positions(), broker.open_orders(), market)
    prices = {}
    for iid in (*positions, *target_weights):  # only what the plan can touch, not the whole market
        px = market.price(str(iid))
        if math.isfinite(px) and px > 0:
            prices[iid] = px
    prefix = f"{run_id}:{portfolio}:{session.isoformat()}:O"
    plan = planner.plan(
        portfolio_id=broker.portfolio_id,
        session_date=session,
        positions=positions,
        cash=account.cash - pending_value,
        prices=prices,
        target_weights=dict(target_weights),
        lot_sizes=lot_sizes,
        decision_id=decision_id,
        order_id_prefix=prefix,
    )
    submitted = broker.submit_all(plan.orders)
    if backtest and not next_open:
        fills.extend(broker.process_fills(market))
    account = broker.account_state()

    realized = _realized_by_fill(fills, before_fills, broker.state().positions) if backtest else []

    final_orders = [broker.order(o.order_id) for o in submitted]
    for o in final_orders:
        records.orders.append({
            "order_id": str(o.order_id), "portfolio_id": portfolio, "session_date": session,
            "created_at": stamp, "instrument_id": str(o.instrument_id), "side": o.side.value,
            "order_type": o.order_type.value, "time_in_force": o.time_in_force.value,
            "quantity": o.quantity, "limit_price": o.limit_price, "stop_price": o.stop_price,
            "status": o.status.value, "mode": mode.value, "decision_id": decision_id, "run_id": run_id,
            "metadata": json.dumps({"filled_quantity": o.filled_quantity, "reason": o.reason}),
        })
        records.executed_actions.append(_action(run_id, portfolio, session, stamp, mode, o, "ORDER_" + (
            "REJECTED" if o.status.value == "REJECTED" else "SUBMITTED"), o.quantity, None, decision_id))
        if o.status.value == "CANCELLED":
            records.executed_actions.append(_action(run_id, portfolio, session, stamp, mode, o, "ORDER_CANCELLED",
                                                    o.remaining_quantity, None, decision_id, o.reason))
    for o in carried:
        now = broker.order(o.order_id)
        if now.status.value == "CANCELLED":
            records.executed_actions.append(_action(run_id, portfolio, session, stamp, mode, now, "ORDER_CANCELLED",
                                                    now.remaining_quantity, None, now.decision_id, now.reason))
    for f, pnl in zip(fills, realized or [None] * len(fills)):
        # pnl: the realised P&L of a fill that reduces a position (None when it opens or adds)
        records.fills.append({
            "fill_id": str(f.fill_id), "order_id": str(f.order_id), "session_date": session,
            "filled_at": stamp, "instrument_id": str(f.instrument_id), "side": f.side.value,
            "quantity": f.quantity, "price": f.price, "commission": f.commission,
            "slippage_bps": f.slippage_bps, "portfolio_id": portfolio, "mode": mode.value, "run_id": run_id,
            "metadata": json.dumps({"realized_pnl": pnl}),
        })
        records.executed_actions.append({
            "action_id": f"{f.fill_id}:FILL", "decision_id": decision_id, "session_date": session,
            "portfolio_id": portfolio, "instrument_id": str(f.instrument_id), "action_type": "FILL",
            "quantity": f.signed_quantity, "price": f.price, "notional": f.notional, "mode": mode.value,
            "run_id": run_id, "created_at": stamp,
            "metadata": json.dumps({"order_id": str(f.order_id), "commission": f.commission}),
        })
    # Without a close this session a position is valued as the book values it: at its last known
    # close (average cost if none), so market values add up to the account's and the book resumes.
    last_prices = broker.last_prices() if backtest else {}
    for iid, p in sorted(broker.positions().items()):
        px = market.price(str(iid))
        if not (math.isfinite(px) and px > 0):
            px = last_prices.get(iid, p.average_cost)
        records.positions_snapshots.append({
            "portfolio_id": portfolio, "session_date": session, "instrument_id": str(iid), "mode": mode.value,
            "snapshot_at": stamp, "quantity": p.quantity, "avg_cost": p.average_cost,
            "market_value": p.quantity * px, "unrealized_pnl": p.quantity * (px - p.average_cost),
            "realized_pnl": p.realized_pnl, "run_id": run_id, "metadata": None,
        })
    if backtest:
        # A position closed this session gets one last row (quantity 0) carrying its realised
        # P&L, so a book resumed from the warehouse keeps it (load_book_state reads it back).
        book = broker.state().positions
        for iid in sorted(i for i, p in before.items() if p.quantity != 0.0 and book.get(i) is not None
                          and book[i].quantity == 0.0):
            records.positions_snapshots.append({
                "portfolio_id": portfolio, "session_date": session, "instrument_id": str(iid), "mode": mode.value,
                "snapshot_at": stamp, "quantity": 0.0, "avg_cost": 0.0, "market_value": 0.0, "unrealized_pnl": 0.0,
                "realized_pnl": book[iid].realized_pnl, "run_id": run_id, "metadata": '{"closed": true}',
            })
    return SessionExecution(session, plan, tuple(final_orders), tuple(fills), account, tuple(realized))


def _with_working_orders(
    positions: Mapping[InstrumentId, Position], working: list[Order], market: MarketSnapshot
) -> tuple[dict[InstrumentId, Position], float]:
    """The book as the plan must see it: held quantity plus what working orders will still trade,
    and the value those orders will pay (their cash, at the session's close).

    Without this a carried remainder (``remainder: carry``) and the session's new order for the
    same target would both fill. A working order on an instrument without a close is left out
    (it cannot be valued; the plan skips that instrument anyway).
    """
    out = dict(positions)
    pending_value = 0.0
    for o in working:
        px = market.price(str(o.instrument_id))
        if not (math.isfinite(px) and px > 0):
            continue
        qty = o.side.sign * o.remaining_quantity
        pending_value += qty * px
        held = out.get(o.instrument_id)
        if held is None:
            out[o.instrument_id] = Position(o.instrument_id, qty, px)
        else:
            out[o.instrument_id] = Position(o.instrument_id, held.quantity + qty, held.average_cost, held.realized_pnl)
    return out, pending_value


def _realized_by_fill(fills, before: Mapping, after: Mapping) -> list[float | None]:
    """Realised P&L per fill: the position's realised P&L move over the session, split over the
    fills of that instrument that reduce it (by quantity); None for fills that open or add."""
    out: list[float | None] = [None] * len(fills)
    by_instrument: dict[InstrumentId, list[int]] = {}
    for k, f in enumerate(fills):
        by_instrument.setdefault(f.instrument_id, []).append(k)
    for iid, ks in by_instrument.items():
        p0 = before.get(iid)
        p1 = after.get(iid)
        move = (p1.realized_pnl if p1 else 0.0) - (p0.realized_pnl if p0 else 0.0)
        q = p0.quantity if p0 else 0.0
        reducing = []
        for k in ks:
            f = fills[k]
            if q != 0.0 and (q > 0) != (f.signed_quantity > 0):
                reducing.append(k)
            q += f.signed_quantity
        total = sum(fills[k].quantity for k in reducing)
        for k in reducing:
            out[k] = move * fills[k].quantity / total if total else 0.0
    return out


def _action(run_id, portfolio, session, stamp, mode: ExecutionMode, o: Order, kind, qty, price, decision_id, reason=None):
    return {
        "action_id": f"{o.order_id}:{kind}", "decision_id": decision_id, "session_date": session,
        "portfolio_id": portfolio, "instrument_id": str(o.instrument_id), "action_type": kind,
        "quantity": o.side.sign * qty, "price": price, "notional": None, "mode": mode.value,
        "run_id": run_id, "created_at": stamp, "metadata": json.dumps({"reason": reason or o.reason}),
    }
