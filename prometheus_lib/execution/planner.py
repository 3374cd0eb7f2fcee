"""Turn a book's target weights or quantities into the session's orders, within its leverage.

``OrderPlanner.plan`` works on dense numpy arrays over the instruments involved (held or
targeted, sorted by id) and goes through these steps:

1. **Value the book.** ``equity = cash + sum(quantity * price)``. A held instrument without a
   usable price gets no order; it stays as it is and is marked at its average cost, the only
   value the planner has for it, in equity and gross exposure.
2. **Targets.** Held instruments absent from the targets are targeted to 0 (closed). A target
   weight ``w`` becomes the value ``w * equity * (1 - cash_buffer)``; weights beyond
   ``max_position_weight`` are clipped to it first (the clipped part stays in cash). The
   target quantity is ``value / price`` (or the given quantity), rounded to the instrument's
   lot **toward zero**, so a target never holds more than asked for in either direction.
3. **Legs.** Each trade ``target - current`` splits into a *reducing* leg (towards flat: sells
   of longs, buys of shorts, the closing half of a flip) and an *increasing* leg (away from
   flat: buys of longs, sells of shorts, the opening half of a flip).
4. **Minimum trade.** A trade worth less than ``min_trade_value`` is skipped, unless it closes
   the position entirely (to flat or through it): exiting is always allowed, and a small
   leftover that can never be sold is worse than a small order.
5. **Funding.** Reducing legs always go through; they never break the limits below. If the
   plan would end with gross exposure above ``max_leverage * equity``, or with cash below
   ``-(max_leverage - 1) * equity`` after an estimated ``cost_buffer_bps`` of commission and
   slippage on every traded value, all increasing legs are scaled down by one common factor
   (pro rata), re-rounded to lots toward zero and re-checked against the minimum trade value.
   The factor is the largest that satisfies both limits at the given prices; float and lot
   effects are settled by a bisection, so the result never exceeds them. With
   ``max_leverage = 1`` that means no borrowing: buys are funded by cash and sell proceeds.
6. **Orders.** Market DAY orders, sells first then buys, each group by instrument id, with ids
   ``f"{order_id_prefix}{n:05d}"`` numbered from 1 in that order.

Only a book already above ``max_leverage`` before any increasing leg (prices moved against it,
and the targets do not reduce it enough) can end outside the limits; the plan then holds only
reducing orders and says so in ``adjustments``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np

from prometheus_lib.config.models import ExecutionConfig
from prometheus_lib.errors import ExecutionError, InvalidValueError
from prometheus_lib.execution.domain import (
    InstrumentId,
    Order,
    OrderId,
    OrderSide,
    OrderType,
    PortfolioId,
    Position,
    TimeInForce,
    finite,
    non_negative,
    positive,
)

# A value / price of exactly n lots can land a few ulps below n; without this nudge rounding
# toward zero would drop a whole lot. 1e-9 of a quantity is far below any real share count.
_ROUNDING_EPSILON = 1e-9
# Limits are checked to this fraction of max_leverage * equity: float noise, not a breach.
_LIMIT_TOLERANCE = 1e-9
# Halving the funding scale 60 times resolves it far below one lot of any book.
_BISECTION_STEPS = 60
# A cost buffer must stay below 100 % of traded value for reducing trades to release cash.
_MAX_COST_BUFFER_BPS = 1_000.0


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """The orders of one session and what the book is expected to look like after them.

    ``expected_cash_after`` and ``expected_gross_exposure`` assume every order fills at the
    prices given to the planner; ``expected_cash_after`` is net of ``estimated_costs`` (the
    planner's cost buffer). ``funding_scale`` is the factor applied to increasing legs (1.0 when
    the targets were fully funded).
    """

    portfolio_id: PortfolioId
    session_date: date
    orders: tuple[Order, ...]
    skipped: tuple[tuple[InstrumentId, str], ...]
    adjustments: tuple[str, ...]
    equity: float
    expected_cash_after: float
    expected_gross_exposure: float
    estimated_costs: float
    funding_scale: float

    @property
    def expected_leverage(self) -> float:
        """Expected gross exposure over equity (inf when equity is not positive)."""
        return self.expected_gross_exposure / self.equity if self.equity > 0 else math.inf


@dataclass(frozen=True, slots=True)
class _Book:
    """Arrays over the plan's instruments; unpriced instruments have price 0 and never trade."""

    ids: tuple[InstrumentId, ...]
    current: np.ndarray
    price: np.ndarray
    mark: np.ndarray  # price, or average cost where unpriced
    lots: np.ndarray
    reduce: np.ndarray
    increase: np.ndarray
    cash: float
    equity: float


@dataclass(frozen=True, slots=True)
class SolvedPlan:
    """What ``OrderPlanner.solve`` decided: the raw and lot-rounded targets, the funding scale and
    the trade ``delta`` per instrument (signed; 0 for no order)."""

    book: _Book
    raw: np.ndarray
    target: np.ndarray
    scale: float
    delta: np.ndarray

    @property
    def equity(self) -> float:
        """The book's equity at the plan's prices (average cost where unpriced)."""
        return self.book.equity


class OrderPlanner:
    """Plan the orders that move a book to target weights or quantities.

    Parameters
    ----------
    config
        Lot size, minimum trade value, maximum leverage and cash buffer.
    cost_buffer_bps
        Estimated commission and slippage, in basis points of traded value, that planned trades
        must leave cash for. Default 10 bps.
    max_position_weight
        Largest absolute target weight of one instrument; larger weights are clipped to it.
        None (the default) means no cap. Applies to ``target_weights`` only: explicit target
        quantities are taken as given.
    allow_short
        Whether negative targets (short positions) are allowed. Default False (long-only).

    Raises
    ------
    InvalidValueError
        If ``cost_buffer_bps`` is not in [0, 1000] or ``max_position_weight`` is not > 0.
    """

    def __init__(
        self,
        config: ExecutionConfig,
        *,
        cost_buffer_bps: float = 10.0,
        max_position_weight: float | None = None,
        allow_short: bool = False,
    ) -> None:
        self.config = config
        self.cost_buffer_bps = non_negative(cost_buffer_bps, "cost_buffer_bps")
        if self.cost_buffer_bps > _MAX_COST_BUFFER_BPS:
            raise InvalidValueError(f"cost_buffer_bps must be <= {_MAX_COST_BUFFER_BPS:g}, was {cost_buffer_bps!r}")
        self.max_position_weight = (
            None if max_position_weight is None else positive(max_position_weight, "max_position_weight")
        )
        self.allow_short = bool(allow_short)

    # ------------------------------------------------------------------ public

    def plan(
        self,
        *,
        portfolio_id: PortfolioId,
        session_date: date,
        positions: Mapping[InstrumentId, Position],
        cash: float,
        prices: Mapping[InstrumentId, float],
        target_weights: Mapping[InstrumentId, float] | None = None,
        target_quantities: Mapping[InstrumentId, float] | None = None,
        lot_sizes: Mapping[InstrumentId, int] | None = None,
        decision_id: str | None = None,
        order_id_prefix: str,
    ) -> OrderPlan:
        """Plan the orders that move ``positions`` to the targets; see the module docstring.

        Parameters
        ----------
        portfolio_id, session_date
            The book and the session the orders are for.
        positions
            Current positions by instrument (flat ones are ignored).
        cash
            Current cash.
        prices
            Prices the plan is valued and sized at. An instrument whose price is missing, NaN,
            infinite or <= 0 gets no order and is listed in ``OrderPlan.skipped``.
        target_weights
            Target weight of equity (after the cash buffer) by instrument.
        target_quantities
            Target quantity by instrument. Give exactly one of the two targets.
        lot_sizes
            Lot size by instrument; ``config.lot_size`` for the others.
        decision_id
            Recorded on every order.
        order_id_prefix
            Order ids are this prefix followed by a 5-digit sequence number from 00001.

        Returns
        -------
        OrderPlan
            The orders (sells first), skipped instruments, adjustments and expected outcome.

        Raises
        ------
        InvalidValueError
            If neither or both targets are given, a target is NaN or infinite, a target is
            negative while shorts are not allowed, ``cash`` is not finite, a lot size is not a
            positive integer, a key is not an ``InstrumentId`` or a position is filed under
            another instrument's id.
        ExecutionError
            If ``target_weights`` are given while equity is not positive.
        """
        by_weight, targets = _chosen_targets(target_weights, target_quantities)
        cash = finite(cash, "cash")
        lot_sizes = {} if lot_sizes is None else lot_sizes
        _check_ids(positions, "positions")
        _check_ids(prices, "prices")
        _check_ids(targets, "target_weights" if by_weight else "target_quantities")
        _check_ids(lot_sizes, "lot_sizes")
        if not isinstance(order_id_prefix, str) or order_id_prefix != order_id_prefix.lstrip():
            raise InvalidValueError(f"order_id_prefix must be a string without leading spaces, was {order_id_prefix!r}")
        for iid, position in positions.items():
            if position.instrument_id != iid:
                raise InvalidValueError(f"positions[{iid}] holds a position in {position.instrument_id}")

        ids = tuple(sorted({i for i, p in positions.items() if not p.is_flat} | set(targets), key=str))
        held = {i: positions[i] for i in ids if i in positions}
        current = np.array([held[i].quantity if i in held else 0.0 for i in ids], dtype=float)
        average_cost = np.array([held[i].average_cost if i in held else 0.0 for i in ids], dtype=float)
        lots = np.array([self._lot_size(i, lot_sizes) for i in ids], dtype=float)
        wanted = np.array([self._target(i, targets.get(i, 0.0), by_weight) for i in ids], dtype=float)

        skipped: dict[InstrumentId, str] = {}
        adjustments: list[str] = []
        price = np.zeros(len(ids))
        for k, iid in enumerate(ids):
            value, problem = _read_price(prices.get(iid))
            if problem is None:
                price[k] = value
            elif current[k] != 0.0 or wanted[k] != 0.0:
                kept = f"; position of {current[k]:g} kept, marked at average cost {average_cost[k]:g}"
                skipped[iid] = problem + (kept if current[k] != 0.0 else "")
        solved = self.solve(ids, current, average_cost, lots, wanted, price, cash, by_weight=by_weight,
                            adjustments=adjustments, portfolio_id=portfolio_id)
        book, raw, target, scale, delta = solved.book, solved.raw, solved.target, solved.scale, solved.delta
        priced, equity = price > 0.0, book.equity
        for k in np.flatnonzero(priced & (target != raw)):
            if by_weight and target[k] == 0.0 and current[k] == 0.0:
                skipped[ids[k]] = f"target of {raw[k]:g} units is less than one lot of {lots[k]:g}"
            elif not by_weight:
                adjustments.append(
                    f"target quantity of {ids[k]} rounded toward zero from {raw[k]:g} to {target[k]:g} "
                    f"(lot {lots[k]:g})"
                )

        desired = target - current
        for k in np.flatnonzero(priced & (desired != 0.0) & (delta == 0.0)):
            value = abs(desired[k]) * price[k]
            if value < self.config.min_trade_value:
                skipped[ids[k]] = (
                    f"trade value {value:,.2f} is below min_trade_value {self.config.min_trade_value:,.2f}"
                )
            else:
                skipped[ids[k]] = (
                    f"not funded: scaled by {scale:.6f} to fit max_leverage {self.config.max_leverage:g}, "
                    "the trade falls below one lot or min_trade_value"
                )

        orders = self._orders(book, delta, portfolio_id, session_date, decision_id, order_id_prefix)
        cash_after, gross_after, costs = self._outcome(book, delta)
        return OrderPlan(
            portfolio_id=portfolio_id,
            session_date=session_date,
            orders=orders,
            skipped=tuple((i, skipped[i]) for i in ids if i in skipped),
            adjustments=tuple(adjustments),
            equity=equity,
            expected_cash_after=cash_after,
            expected_gross_exposure=gross_after,
            estimated_costs=costs,
            funding_scale=scale,
        )

    def solve(
        self,
        ids: tuple[InstrumentId, ...],
        current: np.ndarray,
        average_cost: np.ndarray,
        lots: np.ndarray,
        wanted: np.ndarray,
        price: np.ndarray,
        cash: float,
        *,
        by_weight: bool = True,
        adjustments: list[str] | None = None,
        portfolio_id: object = "the book",
    ) -> SolvedPlan:
        """Steps 1-5 of the module docstring on arrays already checked: the trade per instrument.

        ``ids`` sorted by id; ``price`` 0 where unpriced (no trade); ``wanted`` the target weight or
        quantity per instrument. ``plan`` validates its inputs and calls this; the columnar
        backtest engine calls it directly. Order emission (step 6) is the caller's: sells by
        position in ``ids``, then buys.
        """
        adjustments = [] if adjustments is None else adjustments
        priced = price > 0.0
        mark = np.where(priced, price, average_cost)
        equity = cash + float(current @ mark)
        if by_weight:
            if equity <= 0.0:
                raise ExecutionError(
                    f"cannot plan target_weights for {portfolio_id}: equity must be > 0, was {equity:g}"
                )
            wanted = self._cap_weights(ids, wanted, adjustments)
            budget = equity * (1.0 - self.config.cash_buffer)
            raw = np.divide(wanted * budget, price, out=np.zeros_like(wanted), where=priced)
        else:
            raw = wanted
        target = np.where(priced, _toward_zero(raw, lots, _ROUNDING_EPSILON), current)
        reduce, increase = _legs(current, target)
        book = _Book(ids, current, price, mark, lots, reduce, increase, cash, equity)
        scale, delta = self._fund(book, adjustments)
        return SolvedPlan(book, raw, target, scale, delta)

    # ------------------------------------------------------------------ targets

    def _lot_size(self, iid: InstrumentId, lot_sizes: Mapping[InstrumentId, int]) -> int:
        lot = lot_sizes.get(iid, self.config.lot_size)
        if isinstance(lot, bool) or not isinstance(lot, int | np.integer) or lot < 1:
            raise InvalidValueError(f"lot size of {iid} must be a positive integer, was {lot!r}")
        return int(lot)

    def _target(self, iid: InstrumentId, value: float, by_weight: bool) -> float:
        kind = "target weight" if by_weight else "target quantity"
        f = finite(value, f"{kind} of {iid}")
        if f < 0.0 and not self.allow_short:
            raise InvalidValueError(f"{kind} of {iid} must be >= 0 (shorts are not allowed), was {value!r}")
        return f

    def _cap_weights(self, ids: tuple[InstrumentId, ...], weights: np.ndarray, adjustments: list[str]) -> np.ndarray:
        cap = self.max_position_weight
        if cap is None:
            return weights
        clipped = np.clip(weights, -cap, cap)
        for k in np.flatnonzero(clipped != weights):
            adjustments.append(
                f"target weight of {ids[k]} clipped from {weights[k]:g} to {clipped[k]:g} (max_position_weight {cap:g})"
            )
        return clipped

    # ------------------------------------------------------------------ funding

    def _deltas(self, book: _Book, scale: float) -> np.ndarray:
        increase = book.increase
        if scale < 1.0:
            # Round the scaled target to lots toward zero (never up), and never past the leg's
            # start: an odd-lot holding is not trimmed because its buy was scaled down.
            start = book.current + book.reduce
            increase = _toward_zero(start + increase * scale, book.lots, 0.0) - start
            increase = np.where(np.sign(increase) == np.sign(book.increase), increase, 0.0)
        delta = book.reduce + increase
        final = book.current + delta
        closes = (book.current != 0.0) & (np.sign(final) != np.sign(book.current))
        small = np.abs(delta) * book.price < self.config.min_trade_value
        return np.where(small & ~closes, 0.0, delta)

    def _outcome(self, book: _Book, delta: np.ndarray) -> tuple[float, float, float]:
        costs = self.cost_buffer_bps / 1e4 * float(np.abs(delta) @ book.price)
        cash_after = book.cash - float(delta @ book.price) - costs
        gross_after = float(np.abs(book.current + delta) @ book.mark)
        return cash_after, gross_after, costs

    def _fits(self, book: _Book, delta: np.ndarray) -> bool:
        cash_after, gross_after, _ = self._outcome(book, delta)
        limit = self.config.max_leverage * book.equity
        tolerance = _LIMIT_TOLERANCE * max(abs(limit), 1.0)
        return gross_after <= limit + tolerance and cash_after >= book.equity - limit - tolerance

    def _fund(self, book: _Book, adjustments: list[str]) -> tuple[float, np.ndarray]:
        full = self._deltas(book, 1.0)
        if self._fits(book, full):
            return 1.0, full
        base = self._deltas(book, 0.0)
        leverage = self.config.max_leverage
        if not self._fits(book, base):
            adjustments.append(
                f"the book exceeds max_leverage {leverage:g} even with only reducing orders "
                f"(equity {book.equity:,.2f}); no increasing orders planned"
            )
            return 0.0, base
        # Unrounded, every limit is linear in the scale: solve for the largest one that fits.
        cash0, gross0, _ = self._outcome(book, base)
        limit = leverage * book.equity
        cost_rate = self.cost_buffer_bps / 1e4
        added_gross = float(np.abs(book.increase) @ book.price)
        added_net = float(book.increase @ book.price)
        bounds = [1.0]
        if added_gross > 0.0:
            bounds.append((limit - gross0) / added_gross)
        if added_net + cost_rate * added_gross > 0.0:
            bounds.append((cash0 + limit - book.equity) / (added_net + cost_rate * added_gross))
        low, high = 0.0, min(max(min(bounds), 0.0), 1.0)
        best = base
        candidate = self._deltas(book, high)
        if self._fits(book, candidate):
            low, best = high, candidate
        else:  # lot rounding or a dropped short leg broke a limit: settle it by bisection
            for _ in range(_BISECTION_STEPS):
                middle = (low + high) / 2.0
                candidate = self._deltas(book, middle)
                if self._fits(book, candidate):
                    low, best = middle, candidate
                else:
                    high = middle
        adjustments.append(
            f"increasing orders scaled by {low:.6f} to fit max_leverage {leverage:g}: gross exposure <= "
            f"{limit:,.2f} and cash >= {book.equity - limit:,.2f} after a {self.cost_buffer_bps:g} bps cost buffer"
        )
        return low, best

    # ------------------------------------------------------------------ orders

    def _orders(
        self,
        book: _Book,
        delta: np.ndarray,
        portfolio_id: PortfolioId,
        session_date: date,
        decision_id: str | None,
        prefix: str,
    ) -> tuple[Order, ...]:
        emission = [*np.flatnonzero(delta < 0.0), *np.flatnonzero(delta > 0.0)]
        return tuple(
            Order(
                order_id=OrderId(f"{prefix}{n:05d}"),
                portfolio_id=portfolio_id,
                instrument_id=book.ids[k],
                side=OrderSide.BUY if delta[k] > 0.0 else OrderSide.SELL,
                quantity=float(abs(delta[k])),
                session_date=session_date,
                order_type=OrderType.MARKET,
                time_in_force=TimeInForce.DAY,
                decision_id=decision_id,
            )
            for n, k in enumerate(emission, start=1)
        )


# ---------------------------------------------------------------------- helpers


def _chosen_targets(
    target_weights: Mapping[InstrumentId, float] | None, target_quantities: Mapping[InstrumentId, float] | None
) -> tuple[bool, Mapping[InstrumentId, float]]:
    if target_weights is not None and target_quantities is None:
        return True, target_weights
    if target_quantities is not None and target_weights is None:
        return False, target_quantities
    given = "both were given" if target_weights is not None else "neither was given"
    raise InvalidValueError(f"give exactly one of target_weights and target_quantities; {given}")


def _check_ids(mapping: Mapping[InstrumentId, object], name: str) -> None:
    for key in mapping:
        if not isinstance(key, InstrumentId):
            raise InvalidValueError(f"{name} must be keyed by InstrumentId, had key {key!r}")


def _read_price(raw: object) -> tuple[float, str | None]:
    if raw is None:
        return math.nan, "no price"
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan, f"price is not a number, was {raw!r}"
    if not math.isfinite(value) or value <= 0.0:
        return math.nan, f"price must be a finite number > 0, was {raw!r}"
    return value, None


def _toward_zero(quantity: np.ndarray, lots: np.ndarray, epsilon: float) -> np.ndarray:
    units = quantity / lots
    units = units + np.sign(units) * epsilon * np.maximum(np.abs(units), 1.0)
    return np.trunc(units) * lots + 0.0  # + 0.0 turns -0.0 into 0.0


def _legs(current: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    same_side = (np.sign(current) == np.sign(target)) & (current != 0.0)
    reduce = np.where(same_side, np.where(np.abs(target) < np.abs(current), target - current, 0.0), -current)
    return reduce + 0.0, target - current - reduce
