"""Execution domain values: identifiers, money, quantities, orders, fills, positions, accounts.

Every value is immutable (``frozen=True, slots=True``) and validated at construction; changed
copies come from ``dataclasses.replace`` or the ``with_*`` / ``transition`` methods. Money and
quantities are floats that reject NaN and infinities rather than ``Decimal``: the simulator and
the metrics are float arithmetic end to end (and are checked against vectorbt to 1e-8), and a
``Decimal`` per cash movement would cost the daily loop an order of magnitude for no precision
the rest of the pipeline keeps.

The order state machine::

    NEW ──► SUBMITTED ──► PARTIALLY_FILLED ──► FILLED
     │          │  │             │  ▲  │
     │          │  └──► FILLED   │  └──┘ (further partial fills)
     │          ├──► CANCELLED ◄─┘
     ├──► REJECTED ◄─┘
     └──► CANCELLED

FILLED, CANCELLED and REJECTED are terminal; any other move raises ``IllegalOrderTransition``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from datetime import date

from prometheus_lib.errors import IllegalOrderTransition, InvalidValueError


def finite(value: float, name: str) -> float:
    """Return ``value`` as a float, raising if it is NaN, infinite or not a number.

    Raises
    ------
    InvalidValueError
        If ``value`` is NaN, infinite or cannot be read as a float; the message names ``name``.
    """
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{name} must be a number, was {value!r}") from None
    if not math.isfinite(f):
        raise InvalidValueError(f"{name} must be finite, was {value!r}")
    return f


def positive(value: float, name: str) -> float:
    """Return ``value`` as a finite float that is > 0, else raise ``InvalidValueError``."""
    f = finite(value, name)
    if f <= 0:
        raise InvalidValueError(f"{name} must be > 0, was {value!r}")
    return f


def non_negative(value: float, name: str) -> float:
    """Return ``value`` as a finite float that is >= 0, else raise ``InvalidValueError``."""
    f = finite(value, name)
    if f < 0:
        raise InvalidValueError(f"{name} must be >= 0, was {value!r}")
    return f


# ---------------------------------------------------------------- identifiers


@dataclass(frozen=True, slots=True, order=True)
class _Identifier:
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not self.value or self.value != self.value.strip():
            raise InvalidValueError(
                f"{type(self).__name__} must be a non-empty string without surrounding spaces, was {self.value!r}"
            )

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:  # the generated one hashes a 1-tuple; ids are hashed millions of times
        return hash(self.value)


class InstrumentId(_Identifier):
    """An instrument's identifier, e.g. ``InstrumentId("US_EQ:AAPL")``."""

    __slots__ = ()


class OrderId(_Identifier):
    """An order's identifier, unique within the warehouse."""

    __slots__ = ()


class FillId(_Identifier):
    """A fill's identifier, unique within the warehouse."""

    __slots__ = ()


class PortfolioId(_Identifier):
    """A portfolio's (book's) identifier."""

    __slots__ = ()


# ---------------------------------------------------------------- money and quantities


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency; rejects NaN and infinities."""

    amount: float
    currency: str = "USD"

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", finite(self.amount, "Money.amount"))
        if not (isinstance(self.currency, str) and len(self.currency) == 3 and self.currency.isupper()):
            raise InvalidValueError(f"Money.currency must be a 3-letter ISO code, was {self.currency!r}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidValueError(f"cannot combine {self.currency} with {other.currency}")


@dataclass(frozen=True, slots=True)
class Quantity:
    """A non-negative number of units (shares, contracts); rejects NaN and infinities."""

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", non_negative(self.value, "Quantity.value"))

    def __float__(self) -> float:
        return self.value


# ---------------------------------------------------------------- enums


class OrderSide(enum.StrEnum):
    """Buy or sell."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is OrderSide.BUY else -1


class OrderType(enum.StrEnum):
    """Market, limit or stop order."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"


class TimeInForce(enum.StrEnum):
    """How long an order stays working: the session (DAY) or until cancelled (GTC)."""

    DAY = "DAY"
    GTC = "GTC"


class ExecutionMode(enum.StrEnum):
    """Where orders go: the simulator, the broker's paper account, or the live account."""

    BACKTEST = "BACKTEST"
    PAPER = "PAPER"
    LIVE = "LIVE"


class OrderStatus(enum.StrEnum):
    """An order's state; see the module docstring for the allowed transitions."""

    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_terminal(self) -> bool:
        """True for FILLED, CANCELLED and REJECTED."""
        return not ALLOWED_TRANSITIONS[self]


ALLOWED_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED, OrderStatus.CANCELLED}),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED}
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


# ---------------------------------------------------------------- orders and fills

# Relative tolerance under which a fill completes an order (float sums of partial fills).
_FILL_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Order:
    """An order and where it stands in its state machine.

    ``quantity`` is the unsigned order size; ``side`` gives the direction. ``filled_quantity``
    and ``average_fill_price`` accumulate over fills. Limit orders need ``limit_price``, stop
    orders ``stop_price``.
    """

    order_id: OrderId
    portfolio_id: PortfolioId
    instrument_id: InstrumentId
    side: OrderSide
    quantity: float
    session_date: date
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: float | None = None
    stop_price: float | None = None
    status: OrderStatus = OrderStatus.NEW
    filled_quantity: float = 0.0
    average_fill_price: float | None = None
    decision_id: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", positive(self.quantity, f"order {self.order_id} quantity"))
        object.__setattr__(
            self, "filled_quantity", non_negative(self.filled_quantity, f"order {self.order_id} filled_quantity")
        )
        if self.filled_quantity > self.quantity * (1 + _FILL_EPSILON):
            raise InvalidValueError(
                f"order {self.order_id}: filled_quantity {self.filled_quantity} exceeds quantity {self.quantity}"
            )
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise InvalidValueError(f"order {self.order_id}: a LIMIT order needs limit_price")
        if self.order_type is OrderType.STOP and self.stop_price is None:
            raise InvalidValueError(f"order {self.order_id}: a STOP order needs stop_price")
        if self.limit_price is not None:
            positive(self.limit_price, f"order {self.order_id} limit_price")
        if self.stop_price is not None:
            positive(self.stop_price, f"order {self.order_id} stop_price")
        if self.average_fill_price is not None:
            positive(self.average_fill_price, f"order {self.order_id} average_fill_price")

    @property
    def remaining_quantity(self) -> float:
        """Quantity not yet filled."""
        return max(self.quantity - self.filled_quantity, 0.0)

    @property
    def signed_quantity(self) -> float:
        """``quantity`` with the side's sign (+ buy, - sell)."""
        return self.side.sign * self.quantity

    @property
    def is_terminal(self) -> bool:
        """True once the order is FILLED, CANCELLED or REJECTED."""
        return self.status.is_terminal

    def transition(self, status: OrderStatus, reason: str | None = None) -> Order:
        """Return a copy in ``status``.

        Raises
        ------
        IllegalOrderTransition
            If the state machine does not allow ``self.status -> status``.
        """
        if status not in ALLOWED_TRANSITIONS[self.status]:
            allowed = sorted(s.value for s in ALLOWED_TRANSITIONS[self.status]) or "none (terminal)"
            raise IllegalOrderTransition(
                f"order {self.order_id}: illegal transition {self.status.value} -> {status.value}; allowed: {allowed}"
            )
        return replace(self, status=status, reason=reason if reason is not None else self.reason)

    def with_fill(self, quantity: float, price: float) -> Order:
        """Return a copy with a fill of ``quantity`` at ``price`` applied (PARTIALLY_FILLED or FILLED).

        Raises
        ------
        IllegalOrderTransition
            If the order is not working (NEW or terminal).
        InvalidValueError
            If the fill is not positive or overfills the order.
        """
        qty = positive(quantity, f"order {self.order_id} fill quantity")
        px = positive(price, f"order {self.order_id} fill price")
        if qty > self.remaining_quantity * (1 + _FILL_EPSILON) + 1e-12:
            raise InvalidValueError(
                f"order {self.order_id}: fill of {qty} exceeds remaining {self.remaining_quantity}"
            )
        filled, average, done = fill_progress(self.quantity, self.filled_quantity, self.average_fill_price, qty, px)
        status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        if status not in ALLOWED_TRANSITIONS[self.status]:
            self.transition(status)  # raises IllegalOrderTransition with the message
        return replace(self, status=status, filled_quantity=filled, average_fill_price=average)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of (part of) an order, at a price, with its commission."""

    fill_id: FillId
    order_id: OrderId
    portfolio_id: PortfolioId
    instrument_id: InstrumentId
    side: OrderSide
    quantity: float
    price: float
    commission: float
    session_date: date
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", positive(self.quantity, f"fill {self.fill_id} quantity"))
        object.__setattr__(self, "price", positive(self.price, f"fill {self.fill_id} price"))
        object.__setattr__(self, "commission", non_negative(self.commission, f"fill {self.fill_id} commission"))
        object.__setattr__(self, "slippage_bps", finite(self.slippage_bps, f"fill {self.fill_id} slippage_bps"))

    @property
    def signed_quantity(self) -> float:
        """``quantity`` with the side's sign (+ buy, - sell)."""
        return self.side.sign * self.quantity

    @property
    def notional(self) -> float:
        """``quantity * price`` (unsigned, before commission)."""
        return self.quantity * self.price

    @property
    def cash_flow(self) -> float:
        """Cash change from this fill: -notional for a buy, +notional for a sell, less commission."""
        return -self.side.sign * self.notional - self.commission


# ---------------------------------------------------------------- positions and accounts


@dataclass(frozen=True, slots=True)
class Position:
    """A holding: signed quantity, average cost of the open quantity, and realised P&L so far."""

    instrument_id: InstrumentId
    quantity: float
    average_cost: float = 0.0
    realized_pnl: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", finite(self.quantity, f"position {self.instrument_id} quantity"))
        object.__setattr__(
            self, "average_cost", non_negative(self.average_cost, f"position {self.instrument_id} average_cost")
        )
        object.__setattr__(
            self, "realized_pnl", finite(self.realized_pnl, f"position {self.instrument_id} realized_pnl")
        )

    @property
    def is_flat(self) -> bool:
        """True when no quantity is held."""
        return self.quantity == 0.0

    def market_value(self, price: float) -> float:
        """Signed market value at ``price``."""
        return self.quantity * finite(price, f"price of {self.instrument_id}")

    def unrealized_pnl(self, price: float) -> float:
        """Open P&L at ``price`` against the average cost."""
        return self.quantity * (finite(price, f"price of {self.instrument_id}") - self.average_cost)

    def apply_fill(self, signed_quantity: float, price: float) -> Position:
        """Return the position after trading ``signed_quantity`` at ``price``.

        Average cost follows the open quantity: adding to a position averages the cost in,
        reducing it realises ``(price - average_cost) * closed`` (sign-adjusted), and crossing
        through zero opens the remainder at ``price``. Commissions are cash, not cost basis.
        """
        dq = finite(signed_quantity, f"fill quantity of {self.instrument_id}")
        px = positive(price, f"fill price of {self.instrument_id}")
        return Position(self.instrument_id, *position_after(self.quantity, self.average_cost, self.realized_pnl, dq, px))


@dataclass(frozen=True, slots=True)
class AccountState:
    """A book's cash and valuation at a point in time."""

    portfolio_id: PortfolioId
    session_date: date
    cash: float
    positions_value: float = 0.0
    gross_exposure: float = 0.0
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    currency: str = "USD"

    def __post_init__(self) -> None:
        for name in ("cash", "positions_value", "gross_exposure", "realized_pnl", "unrealized_pnl"):
            object.__setattr__(self, name, finite(getattr(self, name), f"account {self.portfolio_id} {name}"))
        if self.gross_exposure < 0:
            raise InvalidValueError(f"account {self.portfolio_id} gross_exposure must be >= 0, was {self.gross_exposure}")

    @property
    def equity(self) -> float:
        """Cash plus the signed market value of positions."""
        return self.cash + self.positions_value

    @property
    def net_exposure(self) -> float:
        """Signed market value of positions."""
        return self.positions_value

    @property
    def leverage(self) -> float:
        """Gross exposure over equity (inf when equity is not positive)."""
        return self.gross_exposure / self.equity if self.equity > 0 else math.inf


# ---------------------------------------------------------------- pure arithmetic (shared by both backtest engines)


def fill_progress(
    quantity: float, filled_quantity: float, average_fill_price: float | None, fill_quantity: float, fill_price: float
) -> tuple[float, float, bool]:
    """An order's ``(filled_quantity, average_fill_price, done)`` after a fill of ``fill_quantity`` at
    ``fill_price``; a fill within 1e-9 of the rest completes it (``filled_quantity == quantity``)."""
    filled = filled_quantity + fill_quantity
    done = filled >= quantity * (1 - _FILL_EPSILON)
    prev_value = filled_quantity * (average_fill_price or 0.0)
    average = (prev_value + fill_quantity * fill_price) / (filled_quantity + fill_quantity)
    return (quantity if done else filled), average, done


def position_after(
    quantity: float, average_cost: float, realized_pnl: float, signed_quantity: float, price: float
) -> tuple[float, float, float]:
    """A position's ``(quantity, average_cost, realized_pnl)`` after trading ``signed_quantity`` at
    ``price``; see ``Position.apply_fill`` (which validates the inputs and calls this)."""
    q0, dq, px = quantity, signed_quantity, price
    q1 = q0 + dq
    if abs(q1) < 1e-9 * max(abs(q0), abs(dq), 1.0):
        q1 = 0.0
    realized = realized_pnl
    if q0 == 0.0 or (q0 > 0) == (dq > 0):  # opening or adding
        cost = (abs(q0) * average_cost + abs(dq) * px) / abs(q1) if q1 != 0.0 else 0.0
    else:  # reducing, closing or flipping
        closed = min(abs(dq), abs(q0))
        realized += closed * (px - average_cost) * (1.0 if q0 > 0 else -1.0)
        if q1 == 0.0:
            cost = 0.0
        elif (q1 > 0) == (q0 > 0):
            cost = average_cost
        else:
            cost = px
    return q1, cost, realized
