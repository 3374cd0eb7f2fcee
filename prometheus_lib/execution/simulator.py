"""The market simulator: fills working orders against one session's prices and keeps the book.

``MarketSimulator`` owns a position book (cash, and a ``Position`` per instrument with its
average cost and realised P&L) and turns orders into fills, one session at a time:

* **Reference price.** ``fill_at: close`` fills an order decided at session T at T's close
  (an order is eligible from the snapshot of its ``session_date`` on). ``fill_at: next_open``
  fills it at the open of the first later snapshot (eligible when the snapshot's date is after
  its ``session_date``). An order not yet eligible passes through untouched.
* **No trade.** A missing, NaN or non-positive reference price, a halt, or zero volume means no
  fill: the order stays working when ``remainder == "carry"``, else it is CANCELLED. The reason
  is recorded on the order either way.
* **Volume cap.** The fill is at most ``max_participation * volume`` shares of the session, shared
  by every order on the instrument in the session (orders earlier in the sequence use it first).
  NaN volume means the volume is unknown, not zero (zero volume is a no-trade session): no cap.
  The capped part is carried or cancelled per ``remainder``.
* **Lots.** The quantity is rounded down to a multiple of ``lot_size`` (partial fills count). A
  remaining quantity below one lot can never fill and is cancelled.
* **Limit and stop.** A LIMIT order fills only when the slipped fill price is at or better than
  its limit (the price of the quantity the volume cap allows). A STOP order triggers when the
  reference price is at or through its stop (buy: ``reference >= stop``; sell:
  ``reference <= stop``) and then fills like a market order; once triggered it stays triggered.
  Daily bars give no intraday path, so the reference price is the only price tested. An unmet
  condition leaves a GTC order working; a DAY order is CANCELLED at the end of the session.
* **Funding.** The part of a fill that opens or adds to exposure (a buy beyond the short it
  covers, a sell beyond the long it closes) must be paid for out of the buying power
  ``max(equity * max_leverage - gross_exposure, 0)``, valued at the session's reference prices
  before the order: ``opening quantity * fill price + commission <= buying power``. With
  ``max_leverage = 1`` and no shorts this is ``cash``, which is vectorbt's rule for a cash
  account (``allow_partial=True``, ``size_granularity = lot_size``). The largest affordable
  number of lots fills and the remainder is CANCELLED with the reason, even when ``remainder``
  is ``"carry"``: a shortfall of cash is not a liquidity problem that waiting solves.
* **Sequence.** Sells are executed before buys (each group in the order given), so a
  rebalance's sales fund its purchases (vectorbt's ``call_seq="auto"`` does the same).
* **Costs.** Slippage and commission come from ``costs``; commission is charged per fill, and the
  IBKR tier reads the portfolio's shares traded earlier in the fill's calendar month.

DAY orders: the order's session is the snapshot in which it is first eligible. The carried
remainder of a volume-capped or untradable order (``remainder == "carry"``) stays working whatever
its time in force: carrying is how the backtest works a large order over several sessions.

The simulator is deterministic: the same orders and snapshots give the same fills, ids and book.
Fill ids are ``f"{order_id}-F{n}"``, ``n`` counting the order's fills from 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np

from prometheus_lib.config.models import ExecutionConfig
from prometheus_lib.errors import ExecutionError, IllegalOrderTransition, InvalidValueError
from prometheus_lib.execution.corporate_actions import HoldingChange
from prometheus_lib.execution.costs import build_commission_model, build_slippage_model
from prometheus_lib.execution.domain import (
    AccountState,
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
    finite,
    non_negative,
    positive,
)
from prometheus_lib.execution.market import MarketSnapshot

# Slack on the lot rounding, so that float noise in ``max_participation * volume`` (0.29 * 100 =
# 28.999999999999996) does not lose a whole lot.
_LOT_EPSILON = 1e-9

_WORKING = frozenset({OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED})


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What one session did to a batch of orders.

    ``orders`` holds every order passed in, updated, in the order given; ``fills`` the fills in
    the sequence they happened (sells first).
    """

    session_date: date
    orders: tuple[Order, ...]
    fills: tuple[Fill, ...]

    @property
    def working(self) -> tuple[Order, ...]:
        """The orders that remain working (SUBMITTED or PARTIALLY_FILLED) after the session."""
        return tuple(o for o in self.orders if not o.is_terminal)

    @property
    def done(self) -> tuple[Order, ...]:
        """The orders that ended the session FILLED or CANCELLED."""
        return tuple(o for o in self.orders if o.is_terminal)


@dataclass(slots=True)
class _SessionBook:
    """Running valuation of the book inside one ``execute`` call."""

    equity: float
    gross: float
    volume_left: dict[int, float] = field(default_factory=dict)


class MarketSimulator:
    """Fill orders against session snapshots and keep cash, positions and P&L.

    Parameters
    ----------
    config
        Fill timing, slippage, commission, volume cap, remainder rule, lot size and leverage.
    portfolio_id
        The book; orders of another portfolio are refused.
    initial_cash
        Cash at the start (finite; may be negative for a book resumed on margin).
    currency
        The book's 3-letter currency.
    positions
        Holdings to start from (a resumed book), keyed by instrument; flat positions may be
        included to keep their realised P&L.
    as_of
        The session the starting state is as of (a resumed book's T-1); ``mark`` moves it on.
    last_prices
        Last known closes of the starting positions, used to value an instrument until a
        snapshot gives it a finite close (average cost is the fallback).
    month_to_date_shares
        Shares the portfolio traded in ``as_of``'s calendar month (IBKR tiered commission).
    fill_counts
        Fills already made per order id, so a resumed order's next fill id stays unique.

    Raises
    ------
    InvalidValueError
        If a starting value is NaN, infinite or out of range, a position is keyed by another
        instrument, or ``month_to_date_shares`` is given without ``as_of``.
    """

    def __init__(
        self,
        config: ExecutionConfig,
        portfolio_id: PortfolioId,
        initial_cash: float,
        currency: str = "USD",
        *,
        positions: Mapping[InstrumentId, Position] | None = None,
        as_of: date | None = None,
        last_prices: Mapping[InstrumentId, float] | None = None,
        month_to_date_shares: float = 0.0,
        fill_counts: Mapping[OrderId, int] | None = None,
    ) -> None:
        self.config = config
        self.portfolio_id = portfolio_id
        self.currency = Money(0.0, currency).currency
        self._cash = finite(initial_cash, "initial_cash")
        self._positions: dict[InstrumentId, Position] = {}
        for instrument_id, position in (positions or {}).items():
            if position.instrument_id != instrument_id:
                raise InvalidValueError(
                    f"positions[{instrument_id}] holds a position of {position.instrument_id}"
                )
            self._positions[instrument_id] = position
        self._last_price: dict[InstrumentId, float] = {
            i: positive(p, f"last_prices[{i}]") for i, p in (last_prices or {}).items()
        }
        self._as_of = as_of
        shares = non_negative(month_to_date_shares, "month_to_date_shares")
        if shares > 0 and as_of is None:
            raise InvalidValueError(
                f"month_to_date_shares ({shares}) needs as_of, the session whose month it counts"
            )
        self._month: tuple[int, int] | None = (as_of.year, as_of.month) if as_of is not None else None
        self._month_shares = shares
        self._fill_counts: dict[OrderId, int] = {}
        for order_id, count in (fill_counts or {}).items():
            if not isinstance(count, int) or count < 0:
                raise InvalidValueError(f"fill_counts[{order_id}] must be an int >= 0, was {count!r}")
            self._fill_counts[order_id] = count
        self._triggered: set[OrderId] = set()
        self._commission_paid = 0.0
        self._slippage = build_slippage_model(config.slippage)
        self._commission = build_commission_model(config.commission)
        self._field = "close" if config.fill_at == "close" else "open"
        # account_state() is asked for several times a session; it is recomputed only after a
        # fill or a mark changed cash, positions or prices.
        self._account: AccountState | None = None

    # ------------------------------------------------------------ the book

    @property
    def cash(self) -> float:
        """Cash now."""
        return self._cash

    @property
    def as_of(self) -> date | None:
        """The last session marked (or the starting ``as_of``); None before any."""
        return self._as_of

    @property
    def commission_paid(self) -> float:
        """Commission charged by this simulator so far (not counting a resumed book's past)."""
        return self._commission_paid

    @property
    def month_to_date_shares(self) -> float:
        """Shares traded so far in the calendar month of the latest session seen (``as_of`` or later)."""
        if self._month is None:
            return 0.0
        if self._as_of is not None and self._month < (self._as_of.year, self._as_of.month):
            return 0.0  # nothing traded yet in as_of's month
        return self._month_shares

    @property
    def fill_counts(self) -> dict[OrderId, int]:
        """Fills made per order id."""
        return dict(self._fill_counts)

    def positions(self) -> dict[InstrumentId, Position]:
        """Return the non-flat positions by instrument."""
        return {i: p for i, p in self._positions.items() if not p.is_flat}

    def book(self) -> dict[InstrumentId, Position]:
        """Return every position ever held, flat ones included (they keep realised P&L)."""
        return dict(self._positions)

    def last_prices(self) -> dict[InstrumentId, float]:
        """Return the last known close (or fill reference price) per instrument."""
        return dict(self._last_price)

    def holding(self, instrument_id: InstrumentId) -> tuple[float, float, float, float]:
        """Return ``(quantity, average_cost, realized_pnl, last_price)`` of an instrument (zeros and NaN
        for one never held or priced): what a corporate action reads."""
        p = self._positions.get(instrument_id)
        q, c, r = (p.quantity, p.average_cost, p.realized_pnl) if p is not None else (0.0, 0.0, 0.0)
        return q, c, r, self._last_price.get(instrument_id, math.nan)

    def restate_holding(self, instrument_id: InstrumentId, change: HoldingChange) -> None:
        """Replace a holding and credit cash outside a fill: a corporate action applied to the book
        (see ``prometheus_lib.execution.corporate_actions``).

        Raises
        ------
        InvalidValueError
            If a value of ``change`` is NaN, infinite or out of range.
        """
        position = Position(instrument_id, change.quantity, change.average_cost, change.realized_pnl)
        cash = finite(self._cash + change.cash, f"cash after the corporate action on {instrument_id}")
        self._positions[instrument_id] = position
        self._cash = cash
        if math.isfinite(change.last_price):
            self._last_price[instrument_id] = positive(change.last_price, f"last_prices[{instrument_id}]")
        self._account = None

    # ------------------------------------------------------------ marking

    def mark(self, market: MarketSnapshot) -> AccountState:
        """Mark the book to ``market``'s closes and return the account at that session.

        An instrument without a finite positive close keeps its last known close (its average
        cost if none was ever seen). ``realized_pnl`` is price P&L of closed quantity summed over
        every position, flat ones included; commissions are in ``cash``, not in P&L, so
        ``equity = initial cash + realized + unrealized - commissions`` (+ dividends received,
        which are cash too: see ``restate_holding``).

        Raises
        ------
        ExecutionError
            If ``market`` is earlier than the last session marked.
        """
        self._check_order_of_sessions(market)
        held = [i for i, p in self._positions.items() if not p.is_flat]
        if held:
            columns = np.array([_column(market, i) for i in held], dtype=np.int64)
            closes = np.where(columns >= 0, market.close[np.maximum(columns, 0)], np.nan)
            for instrument_id, close in zip(held, closes.tolist(), strict=True):
                if math.isfinite(close) and close > 0:
                    self._last_price[instrument_id] = close
        self._as_of = market.session_date
        self._account = None
        return self.account_state()

    def account_state(self) -> AccountState:
        """Return the account valued at the last known prices, as of the last session marked.

        Raises
        ------
        ExecutionError
            If no session has been marked and no ``as_of`` was given.
        """
        if self._as_of is None:
            raise ExecutionError(
                f"portfolio {self.portfolio_id}: no session marked yet; mark a snapshot or pass as_of"
            )
        if self._account is not None and self._account.session_date == self._as_of:
            return self._account
        held = [(i, p) for i, p in self._positions.items() if p.quantity != 0.0]
        quantities = np.array([p.quantity for _, p in held], dtype=float)
        costs = np.array([p.average_cost for _, p in held], dtype=float)
        prices = np.array([self._value_price(i, p) for i, p in held], dtype=float)
        # math.fsum is exactly rounded, so the totals do not depend on the order positions were
        # opened in: a book resumed from the warehouse values to the same bits as the original.
        realized = math.fsum(p.realized_pnl for p in self._positions.values())
        values = quantities * prices
        self._account = AccountState(
            portfolio_id=self.portfolio_id,
            session_date=self._as_of,
            cash=self._cash,
            positions_value=math.fsum(values),
            gross_exposure=math.fsum(np.abs(values)),
            realized_pnl=realized,
            unrealized_pnl=math.fsum(quantities * (prices - costs)),
            currency=self.currency,
        )
        return self._account

    def _value_price(self, instrument_id: InstrumentId, position: Position) -> float:
        return self._last_price.get(instrument_id, position.average_cost)

    # ------------------------------------------------------------ execution

    def execute(self, orders: Sequence[Order], market: MarketSnapshot) -> SimulationResult:
        """Fill the working ``orders`` that are eligible in ``market``'s session.

        Parameters
        ----------
        orders
            Working orders (SUBMITTED or PARTIALLY_FILLED) of this portfolio, unique ids.
        market
            The session's snapshot.

        Returns
        -------
        SimulationResult
            Every order updated (filled, cancelled with a reason, or still working), the fills.

        Raises
        ------
        ExecutionError
            If an order belongs to another portfolio, an id repeats, or ``market`` is earlier
            than the last session marked.
        IllegalOrderTransition
            If an order is not working (NEW or terminal).
        """
        self._check_order_of_sessions(market)
        seen: set[OrderId] = set()
        for order in orders:
            if order.portfolio_id != self.portfolio_id:
                raise ExecutionError(
                    f"order {order.order_id} belongs to portfolio {order.portfolio_id}, "
                    f"not to this simulator's {self.portfolio_id}"
                )
            if order.status not in _WORKING:
                raise IllegalOrderTransition(
                    f"order {order.order_id}: only SUBMITTED or PARTIALLY_FILLED orders can execute, "
                    f"was {order.status.value}"
                )
            if order.order_id in seen:
                raise ExecutionError(f"order {order.order_id} appears twice in one execute call")
            seen.add(order.order_id)

        self._roll_month(market.session_date)
        book = self._session_book(market)
        updated = list(orders)
        fills: list[Fill] = []
        sequence = sorted(range(len(orders)), key=lambda n: (orders[n].side is OrderSide.BUY, n))
        for n in sequence:
            order = orders[n]
            if not self._is_eligible(order, market):
                continue
            updated[n], fill = self._execute_one(order, market, book)
            if fill is not None:
                fills.append(fill)
        return SimulationResult(market.session_date, tuple(updated), tuple(fills))

    def _is_eligible(self, order: Order, market: MarketSnapshot) -> bool:
        if self._field == "close":
            return order.session_date <= market.session_date
        return order.session_date < market.session_date

    def _session_book(self, market: MarketSnapshot) -> _SessionBook:
        reference = getattr(market, self._field)
        values = []
        for instrument_id, position in self._positions.items():
            if position.is_flat:
                continue
            k = _column(market, instrument_id)
            price = float(reference[k]) if k >= 0 else math.nan
            if not (math.isfinite(price) and price > 0):
                price = self._value_price(instrument_id, position)
            values.append(position.quantity * price)
        # Exactly rounded sums: the valuation does not depend on the order positions were opened in.
        return _SessionBook(self._cash + math.fsum(values), math.fsum(abs(v) for v in values))

    def _execute_one(self, order: Order, market: MarketSnapshot, book: _SessionBook) -> tuple[Order, Fill | None]:
        config = self.config
        k = _column(market, order.instrument_id)
        blocked = (
            f"no fill: {order.instrument_id} is not in the market data of {market.session_date}" if k < 0
            else untradable_reason(order.instrument_id, self._field, market.session_date,
                                   float(getattr(market, self._field)[k]), bool(market.halted[k]), float(market.volume[k]))
        )
        if blocked is not None:
            return self._carry_or_cancel(order, blocked), None
        reference = float(getattr(market, self._field)[k])
        volume = float(market.volume[k])
        volatility = float(market.daily_volatility[k])
        where = f"{self._field} {reference:g} of {order.instrument_id} on {market.session_date}"

        if order.order_type is OrderType.STOP and not self._is_triggered(order):
            assert order.stop_price is not None
            hit = reference >= order.stop_price if order.side is OrderSide.BUY else reference <= order.stop_price
            if not hit:
                return self._unmet(order, f"stop {order.stop_price:g} not reached: {where}"), None
            self._triggered.add(order.order_id)

        wanted = order.remaining_quantity
        capped, volume_reason = wanted, None
        if config.max_participation is not None and math.isfinite(volume):
            left = book.volume_left.setdefault(k, config.max_participation * volume)
            if left < wanted:
                capped = max(left, 0.0)
                volume_reason = volume_cap_reason(config.max_participation, volume, order.instrument_id,
                                                  market.session_date)
        quantity = round_to_lot(capped, config.lot_size)
        if quantity <= 0:
            if volume_reason is not None:
                return self._carry_or_cancel(order, f"no fill: {volume_reason}"), None
            return order.transition(OrderStatus.CANCELLED, odd_lot_reason(wanted, config.lot_size)), None

        def slip(shares: float) -> tuple[float, float]:
            return self._slippage.fill_price(order.side, reference, shares, volume, volatility)

        if order.order_type is OrderType.LIMIT:
            assert order.limit_price is not None
            price, _ = slip(quantity)
            ok = price <= order.limit_price if order.side is OrderSide.BUY else price >= order.limit_price
            if not ok:
                unmet = f"limit {order.limit_price:g} not reached: fill price {price:g}, {where}"
                return self._unmet(order, unmet), None

        quantity, funding_reason = self._fund(order, quantity, slip, book)
        if quantity <= 0:
            return order.transition(OrderStatus.CANCELLED, funding_reason), None

        price, slippage_bps = slip(quantity)
        fill = self._fill(order, quantity, price, slippage_bps, market.session_date)
        self._apply(fill, reference, book, k)
        order = order.with_fill(quantity, price)
        if order.status is OrderStatus.FILLED:
            return order, fill
        if funding_reason is not None:
            return order.transition(OrderStatus.CANCELLED, funding_reason), fill
        if volume_reason is not None:
            return self._carry_or_cancel(order, volume_reason), fill
        return order.transition(OrderStatus.CANCELLED, odd_lot_reason(order.remaining_quantity, config.lot_size)), fill

    def _is_triggered(self, order: Order) -> bool:
        return order.order_id in self._triggered or order.filled_quantity > 0

    def _carry_or_cancel(self, order: Order, reason: str) -> Order:
        if self.config.remainder == "carry":
            return replace(order, reason=carried_reason(reason))
        return order.transition(OrderStatus.CANCELLED, cancelled_reason(reason))

    @staticmethod
    def _unmet(order: Order, reason: str) -> Order:
        if order.time_in_force is TimeInForce.DAY:
            return order.transition(OrderStatus.CANCELLED, f"DAY order expired: {reason}")
        return replace(order, reason=reason)

    def _fund(
        self, order: Order, quantity: float, slip: Callable[[float], tuple[float, float]], book: _SessionBook
    ) -> tuple[float, str | None]:
        held = self._positions.get(order.instrument_id)
        held_quantity = held.quantity if held is not None else 0.0
        reducing = min(quantity, max(-order.side.sign * held_quantity, 0.0))
        if quantity <= reducing:
            return quantity, None
        budget = max(book.equity * self.config.max_leverage - book.gross, 0.0)
        month_shares = self._month_shares

        def affordable(shares: float) -> bool:
            if shares <= reducing:
                return True
            price, _ = slip(shares)
            cost = (shares - reducing) * price + self._commission.commission(shares, price, month_shares)
            return cost <= budget

        if affordable(quantity):
            return quantity, None
        funded = largest_affordable(quantity, reducing, self.config.lot_size, affordable)
        return funded, buying_power_reason(budget, self.currency, funded, quantity, order.instrument_id,
                                           self.config.max_leverage)

    def _fill(self, order: Order, quantity: float, price: float, slippage_bps: float, session_date: date) -> Fill:
        n = self._fill_counts.get(order.order_id, 0) + 1
        commission = self._commission.commission(quantity, price, self._month_shares)
        return Fill(
            fill_id=FillId(f"{order.order_id}-F{n}"),
            order_id=order.order_id,
            portfolio_id=order.portfolio_id,
            instrument_id=order.instrument_id,
            side=order.side,
            quantity=quantity,
            price=price,
            commission=commission,
            session_date=session_date,
            slippage_bps=slippage_bps,
        )

    def _apply(self, fill: Fill, reference: float, book: _SessionBook, k: int) -> None:
        before = self._positions.get(fill.instrument_id) or Position(fill.instrument_id, 0.0)
        after = before.apply_fill(fill.signed_quantity, fill.price)
        self._positions[fill.instrument_id] = after
        self._cash += fill.cash_flow
        self._account = None
        self._commission_paid += fill.commission
        self._month_shares += fill.quantity
        self._fill_counts[fill.order_id] = self._fill_counts.get(fill.order_id, 0) + 1
        self._last_price[fill.instrument_id] = reference
        book.equity += fill.cash_flow + (after.quantity - before.quantity) * reference
        book.gross += (abs(after.quantity) - abs(before.quantity)) * reference
        if k in book.volume_left:
            book.volume_left[k] -= fill.quantity

    def _roll_month(self, session_date: date) -> None:
        month = (session_date.year, session_date.month)
        if self._month != month:
            self._month, self._month_shares = month, 0.0

    def _check_order_of_sessions(self, market: MarketSnapshot) -> None:
        if self._as_of is not None and market.session_date < self._as_of:
            raise ExecutionError(
                f"portfolio {self.portfolio_id}: sessions must be processed in order; "
                f"got {market.session_date} after {self._as_of}"
            )


# ---------------------------------------------------------------- rules shared with the columnar engine
# (prometheus_lib/backtest/columnar.py fills market orders with the same rules and the same words)


def round_to_lot(quantity: float, lot: int) -> float:
    """``quantity`` rounded down to a multiple of ``lot`` (float noise does not lose a lot)."""
    return math.floor(quantity / lot + _LOT_EPSILON) * lot


def largest_affordable(quantity: float, reducing: float, lot: int, affordable: Callable[[float], bool]) -> float:
    """The largest multiple of ``lot`` up to ``quantity`` that ``affordable`` accepts, by bisection;
    ``affordable`` is monotone and accepts anything up to ``reducing`` and rejects ``quantity``."""
    low, high = int(math.floor(reducing / lot + _LOT_EPSILON)), round(quantity / lot)  # low fits, high does not
    while high - low > 1:
        middle = (low + high) // 2
        if affordable(middle * lot):
            low = middle
        else:
            high = middle
    return float(low * lot)


def untradable_reason(instrument_id: object, field: str, day: date, price: float, halted: bool,
                      volume: float) -> str | None:
    """Why an instrument in the market data cannot trade at ``field`` on ``day`` (None when it can)."""
    if not (math.isfinite(price) and price > 0):
        return f"no fill: {field} of {instrument_id} on {day} is {price:g}"
    if halted:
        return f"no fill: {instrument_id} is halted on {day}"
    if math.isfinite(volume) and volume <= 0:
        return f"no fill: {instrument_id} did not trade on {day} (volume {volume:g})"
    return None


def volume_cap_reason(max_participation: float, volume: float, instrument_id: object, day: date) -> str:
    """The reason a fill was capped by the participation limit."""
    return f"volume cap: at most {max_participation:g} of volume {volume:g} of {instrument_id} on {day}"


def odd_lot_reason(remaining: float, lot: int) -> str:
    """The reason a remainder below one lot is cancelled."""
    return f"remaining quantity {remaining:g} is below the lot size {lot}; cancelled"


def buying_power_reason(budget: float, currency: str, funded: float, quantity: float, instrument_id: object,
                        max_leverage: float) -> str:
    """The reason a fill was cut to what the buying power funds."""
    return (
        f"insufficient buying power: {budget:.2f} {currency} funds {funded:g} of {quantity:g} "
        f"{instrument_id} including commission (max_leverage {max_leverage:g}); remainder cancelled"
    )


def carried_reason(reason: str) -> str:
    """An unfilled part kept working (``remainder: carry``)."""
    return f"{reason}; carried"


def cancelled_reason(reason: str) -> str:
    """An unfilled part cancelled (``remainder: cancel``)."""
    return f"{reason}; remainder cancelled"


def _column(market: MarketSnapshot, instrument_id: InstrumentId) -> int:
    k = market.index.position(instrument_id.value)
    return -1 if k is None else k
