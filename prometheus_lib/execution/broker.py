"""The broker protocol every mode implements: BACKTEST here, PAPER and LIVE against IBKR later."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import date

from prometheus_lib.execution.domain import (
    AccountState,
    ExecutionMode,
    Fill,
    InstrumentId,
    Order,
    OrderId,
    PortfolioId,
    Position,
)


class BrokerInterface(ABC):
    """Submit and cancel orders; read positions, the account and fills.

    Implementations own the order book: ``submit`` moves an order NEW -> SUBMITTED (or
    REJECTED) and returns it as the broker holds it. Fills arrive asynchronously from a real
    broker; in BACKTEST mode ``process_fills`` produces them for a session synchronously.
    """

    mode: ExecutionMode
    portfolio_id: PortfolioId

    @abstractmethod
    def submit(self, order: Order) -> Order:
        """Submit ``order`` (status NEW); return it as SUBMITTED or REJECTED."""

    @abstractmethod
    def cancel(self, order_id: OrderId, reason: str = "cancelled by request") -> Order:
        """Cancel a working order and return it CANCELLED.

        Raises
        ------
        UnknownOrderError
            If the broker does not know ``order_id``.
        IllegalOrderTransition
            If the order is already terminal.
        """

    @abstractmethod
    def order(self, order_id: OrderId) -> Order:
        """Return the broker's current view of an order (raises ``UnknownOrderError``)."""

    @abstractmethod
    def open_orders(self) -> list[Order]:
        """Return the orders still working (SUBMITTED or PARTIALLY_FILLED)."""

    @abstractmethod
    def positions(self) -> dict[InstrumentId, Position]:
        """Return non-flat positions by instrument."""

    @abstractmethod
    def account_state(self) -> AccountState:
        """Return cash and valuation as of the last processed session."""

    @abstractmethod
    def fills(self, session_date: date | None = None) -> list[Fill]:
        """Return fills, all of them or those of ``session_date``."""

    def submit_all(self, orders: Sequence[Order]) -> list[Order]:
        """Submit ``orders`` in order; return them as the broker holds them."""
        return [self.submit(o) for o in orders]
