"""The BACKTEST broker: an in-memory order book in front of the market simulator.

Orders live in a dict by ``OrderId`` (insertion ordered, so every listing is deterministic).
``submit`` accepts or rejects; ``process_fills`` hands the working orders to the
``MarketSimulator`` for one session, stores what it did and marks the book to the session's close.

Time in force follows the simulator: a DAY order whose limit or stop is not met is CANCELLED at
the end of the session it was first eligible in; its remainder is carried past that session only
when ``remainder == "carry"`` and the cause was the volume cap or an untradable session. GTC
orders stay working until filled or cancelled.

A backtest resumes from the warehouse with ``from_state`` (cash and positions as of T-1) and saves
with ``state``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import NamedTuple

from prometheus_lib.config.models import ExecutionConfig
from prometheus_lib.errors import ExecutionError, IllegalOrderTransition, UnknownOrderError
from prometheus_lib.execution.broker import BrokerInterface
from prometheus_lib.execution.corporate_actions import (
    AppliedAction,
    CorporateAction,
    HoldingChange,
    OrderChange,
    apply_corporate_actions,
    check_action_sessions,
)
from prometheus_lib.execution.domain import (
    AccountState,
    ExecutionMode,
    Fill,
    InstrumentId,
    Order,
    OrderId,
    OrderStatus,
    OrderType,
    PortfolioId,
    Position,
)
from prometheus_lib.execution.market import MarketSnapshot
from prometheus_lib.execution.simulator import MarketSimulator


class BookState(NamedTuple):
    """A book to save and resume from: cash and every position (flat ones keep realised P&L)."""

    cash: float
    positions: dict[InstrumentId, Position]


class BacktestBroker(BrokerInterface):
    """Broker of BACKTEST mode: orders in memory, fills from the ``MarketSimulator``.

    Parameters
    ----------
    config
        The execution config the simulator fills with.
    portfolio_id
        The book; orders of another portfolio are rejected.
    initial_cash
        Starting cash.
    currency
        The book's currency.
    instruments
        The tradable universe; an order for an instrument outside it is rejected. None accepts
        any instrument (orders for one missing from the market data then never fill).
    as_of
        The session the starting state is as of; without it ``account_state`` needs a session
        processed or marked first.
    """

    mode = ExecutionMode.BACKTEST

    def __init__(
        self,
        config: ExecutionConfig,
        portfolio_id: PortfolioId,
        initial_cash: float,
        currency: str = "USD",
        *,
        instruments: Iterable[InstrumentId | str] | None = None,
        as_of: date | None = None,
    ) -> None:
        self.portfolio_id = portfolio_id
        self.config = config
        self._simulator = MarketSimulator(config, portfolio_id, initial_cash, currency, as_of=as_of)
        self._instruments = None if instruments is None else frozenset(str(i) for i in instruments)
        self._orders: dict[OrderId, Order] = {}
        # Working orders kept apart so a ten-year run does not rescan every past order per session.
        self._working: dict[OrderId, Order] = {}
        self._fills: list[Fill] = []

    @classmethod
    def from_state(
        cls,
        config: ExecutionConfig,
        portfolio_id: PortfolioId,
        cash: float,
        positions: Mapping[InstrumentId, Position],
        *,
        as_of: date,
        currency: str = "USD",
        instruments: Iterable[InstrumentId | str] | None = None,
        last_prices: Mapping[InstrumentId, float] | None = None,
        month_to_date_shares: float = 0.0,
        open_orders: Sequence[Order] = (),
        fills: Sequence[Fill] = (),
    ) -> BacktestBroker:
        """Build a broker resuming a saved book, e.g. from the warehouse as of session T-1.

        Parameters
        ----------
        config, portfolio_id, currency, instruments
            As for the constructor.
        cash
            Cash as of ``as_of``.
        positions
            Positions as of ``as_of`` by instrument (average cost and realised P&L kept).
        as_of
            The session the state is as of; the next session processed must not be earlier.
        last_prices
            Closes of the positions at ``as_of``, to value them before the next snapshot
            (without them a position is valued at its average cost until then).
        month_to_date_shares
            Shares traded in ``as_of``'s calendar month (IBKR tiered commission).
        open_orders
            Orders still working at ``as_of`` (carried remainders, GTC orders).
        fills
            Earlier fills of those orders (kept in ``fills()``), so new fill ids continue their
            numbering.

        Raises
        ------
        ExecutionError
            If an open order is not working, belongs to another portfolio or repeats an id, or
            a partially filled one comes without its fills.
        InvalidValueError
            If a value of the state is NaN, infinite or out of range.
        """
        broker = cls(config, portfolio_id, cash, currency, instruments=instruments, as_of=as_of)
        counts: dict[OrderId, int] = {}
        for fill in fills:
            counts[fill.order_id] = counts.get(fill.order_id, 0) + 1
        broker._simulator = MarketSimulator(
            config,
            portfolio_id,
            cash,
            currency,
            positions=positions,
            as_of=as_of,
            last_prices=last_prices,
            month_to_date_shares=month_to_date_shares,
            fill_counts=counts,
        )
        for order in open_orders:
            if order.portfolio_id != portfolio_id or order.is_terminal or order.status is OrderStatus.NEW:
                raise ExecutionError(
                    f"open order {order.order_id} must be a working order of portfolio {portfolio_id}, "
                    f"was {order.status.value} of {order.portfolio_id}"
                )
            if order.order_id in broker._orders:
                raise ExecutionError(f"open order {order.order_id} is given twice")
            if order.filled_quantity > 0 and order.order_id not in counts:
                raise ExecutionError(
                    f"open order {order.order_id} is partially filled ({order.filled_quantity:g}); "
                    "pass its fills so new fill ids do not repeat them"
                )
            broker._orders[order.order_id] = order
            broker._working[order.order_id] = order
        broker._fills.extend(fills)
        return broker

    # ------------------------------------------------------------ orders

    def submit(self, order: Order) -> Order:
        """Submit ``order`` (status NEW); return it SUBMITTED, or REJECTED with the reason.

        An order is rejected when it belongs to another portfolio, its instrument is outside
        the universe, its quantity is below one lot, it already reports fills, or it carries a
        limit or stop price its type does not use.

        Raises
        ------
        IllegalOrderTransition
            If ``order`` is not NEW.
        ExecutionError
            If an order with the same id was submitted before.
        """
        if order.status is not OrderStatus.NEW:
            raise IllegalOrderTransition(
                f"order {order.order_id}: only a NEW order can be submitted, was {order.status.value}"
            )
        if order.order_id in self._orders:
            raise ExecutionError(f"order {order.order_id} was already submitted to portfolio {self.portfolio_id}")
        reason = self._rejection(order)
        held = order.transition(OrderStatus.REJECTED if reason else OrderStatus.SUBMITTED, reason)
        self._orders[order.order_id] = held
        if not held.is_terminal:
            self._working[order.order_id] = held
        return held

    def _rejection(self, order: Order) -> str | None:
        if order.portfolio_id != self.portfolio_id:
            return f"order is for portfolio {order.portfolio_id}, this broker books {self.portfolio_id}"
        if self._instruments is not None and order.instrument_id.value not in self._instruments:
            return f"unknown instrument {order.instrument_id}: not in the broker's universe"
        if order.quantity < self.config.lot_size:
            return f"quantity {order.quantity:g} is below one lot ({self.config.lot_size})"
        if order.filled_quantity > 0 or order.average_fill_price is not None:
            return f"a NEW order cannot report fills, was filled_quantity {order.filled_quantity:g}"
        if order.limit_price is not None and order.order_type is not OrderType.LIMIT:
            return f"limit_price {order.limit_price:g} on a {order.order_type.value} order"
        if order.stop_price is not None and order.order_type is not OrderType.STOP:
            return f"stop_price {order.stop_price:g} on a {order.order_type.value} order"
        return None

    def cancel(self, order_id: OrderId, reason: str = "cancelled by request") -> Order:
        """Cancel a working order and return it CANCELLED.

        Raises
        ------
        UnknownOrderError
            If the broker does not know ``order_id``.
        IllegalOrderTransition
            If the order is already terminal.
        """
        cancelled = self.order(order_id).transition(OrderStatus.CANCELLED, reason)
        self._orders[order_id] = cancelled
        self._working.pop(order_id, None)
        return cancelled

    def order(self, order_id: OrderId) -> Order:
        """Return the broker's current view of an order.

        Raises
        ------
        UnknownOrderError
            If the broker does not know ``order_id``.
        """
        try:
            return self._orders[order_id]
        except KeyError:
            raise UnknownOrderError(
                f"unknown order {order_id} in portfolio {self.portfolio_id} ({len(self._orders)} orders known)"
            ) from None

    def orders(self) -> list[Order]:
        """Return every order the broker knows, in submission order."""
        return list(self._orders.values())

    def open_orders(self) -> list[Order]:
        """Return the orders still working (SUBMITTED or PARTIALLY_FILLED), in submission order."""
        return [o for o in self._working.values() if not o.is_terminal and o.status is not OrderStatus.NEW]

    # ------------------------------------------------------------ sessions

    def process_fills(self, market: MarketSnapshot) -> list[Fill]:
        """Execute the working orders in ``market``'s session, then mark the book to its close.

        Returns
        -------
        list[Fill]
            The session's fills, sells first.

        Raises
        ------
        ExecutionError
            If ``market`` is earlier than the last session processed or marked.
        """
        result = self._simulator.execute(self.open_orders(), market)
        for order in result.orders:
            self._orders[order.order_id] = order
            if order.is_terminal:
                self._working.pop(order.order_id, None)
            else:
                self._working[order.order_id] = order
        self._fills.extend(result.fills)
        self._simulator.mark(market)
        return list(result.fills)

    def apply_corporate_actions(self, actions: Sequence[CorporateAction]) -> list[AppliedAction]:
        """Apply one session's corporate actions to the book, before that session's fills.

        Splits restate positions and working orders (limit and stop prices too), dividends credit
        cash, delistings close positions at the delisting price and cancel working orders; the
        rules are ``prometheus_lib.execution.corporate_actions``'s, shared with the columnar
        backtest engine.

        Returns
        -------
        list[AppliedAction]
            One per action that found a position or a working order, in the order applied.

        Raises
        ------
        ExecutionError
            If an action's session is not after the last session processed or marked (it would
            apply to a book that already traded through its ex-date).
        """
        check_action_sessions(actions, self.as_of, self.portfolio_id)
        return apply_corporate_actions(actions, _ActionBook(self))

    def mark(self, market: MarketSnapshot) -> AccountState:
        """Mark the book to ``market``'s closes without trading (e.g. to plan at the close)."""
        return self._simulator.mark(market)

    # ------------------------------------------------------------ the book

    def positions(self) -> dict[InstrumentId, Position]:
        """Return the non-flat positions by instrument."""
        return self._simulator.positions()

    def account_state(self) -> AccountState:
        """Return cash and valuation as of the last session processed or marked.

        Raises
        ------
        ExecutionError
            If no session was processed or marked and the broker was built without ``as_of``.
        """
        return self._simulator.account_state()

    def fills(self, session_date: date | None = None) -> list[Fill]:
        """Return the fills, all of them or those of ``session_date``, in the order they happened."""
        if session_date is None:
            return list(self._fills)
        return [f for f in self._fills if f.session_date == session_date]

    def state(self) -> BookState:
        """Return ``(cash, positions)`` to save; positions include flat ones with realised P&L.

        ``as_of``, ``last_prices()``, ``month_to_date_shares`` and ``open_orders()`` complete
        what ``from_state`` takes.
        """
        return BookState(self._simulator.cash, self._simulator.book())

    @property
    def as_of(self) -> date | None:
        """The last session processed or marked (or the starting ``as_of``)."""
        return self._simulator.as_of

    @property
    def month_to_date_shares(self) -> float:
        """Shares traded so far in the current calendar month (IBKR tiered commission)."""
        return self._simulator.month_to_date_shares

    def last_prices(self) -> dict[InstrumentId, float]:
        """Return the last known close per instrument."""
        return self._simulator.last_prices()

    @property
    def commission_paid(self) -> float:
        """Commission charged since this broker was built."""
        return self._simulator.commission_paid


class _ActionBook:
    """``BacktestBroker``'s book as ``apply_corporate_actions`` sees it (``CorporateActionBook``)."""

    def __init__(self, broker: BacktestBroker) -> None:
        self._broker = broker

    def holding(self, instrument_id: InstrumentId) -> tuple[float, float, float, float]:
        return self._broker._simulator.holding(instrument_id)

    def set_holding(self, instrument_id: InstrumentId, change: HoldingChange) -> None:
        self._broker._simulator.restate_holding(instrument_id, change)

    def working_orders(self, instrument_id: InstrumentId) -> list[tuple]:
        return [(o.order_id, o.quantity, o.filled_quantity, o.average_fill_price, o.limit_price, o.stop_price)
                for o in self._broker.open_orders() if o.instrument_id == instrument_id]

    def set_order(self, handle: Hashable, change: OrderChange) -> None:
        broker = self._broker
        order = broker.order(handle)
        if change.cancel_reason is not None:
            broker.cancel(order.order_id, change.cancel_reason)
            return
        restated = replace(order, quantity=change.quantity, filled_quantity=change.filled_quantity,
                           average_fill_price=change.average_fill_price, limit_price=change.limit_price,
                           stop_price=change.stop_price)
        broker._orders[order.order_id] = restated
        broker._working[order.order_id] = restated
