"""Corporate actions applied to a book: splits, cash dividends and delistings, one rule in one place.

A corporate action (a row of ``historical.corporate_actions``) is applied on its ex-date session
T, *before* that session's orders are filled (with ``fill_at: next_open`` before the open fills
too), to the book as it stood at the close of T-1. Prices are raw throughout: the book, fills and
valuations use ``prices_daily.open/close`` as traded, so the action is what keeps the book's value
continuous across the price change of the ex-date.

* **SPLIT** ``ratio`` s (new shares per old share): the position's quantity is multiplied by s and
  its average cost divided by s, so cost basis, realised P&L and market value are unchanged; the
  book's last known price of the instrument is divided by s too (it values the position until the
  next close). Every working order on the instrument is restated in new shares: filled quantity
  times s, average fill price divided by s, the remaining quantity times s rounded down to whole
  shares, limit and stop prices divided by s. An order whose restated remainder is below one share
  is cancelled with the reason.
* **Fractional shares** (a reverse split, e.g. 1-for-10 of 1,005 shares): the book keeps whole
  shares only. The fraction (0.5 new share here) is paid out as *cash in lieu* at the last close
  before the ex-date in new-share terms (close_{T-1} / s; the average cost when no close was ever
  seen), the price the book valued it at, so equity does not move; the fraction's P&L against its
  average cost is realised. A short position pays for its fraction the same way. Lots do not enter:
  a split can leave a quantity that is not a multiple of the lot size (as at a real broker: an odd
  lot); the planner and the simulator round *trades* to lots as before.
* **DIVIDEND** ``amount`` d per share: cash += quantity held at the close of T-1 x d. A short pays
  it (the quantity is negative). Realised P&L is price P&L and does not include dividends; the
  dividend is in cash (and in the action's row). The ex-date's close drops by about d: the cash
  offsets it.
* **DELISTING** ``amount`` p: the position is closed at p (cash += quantity x p, realised P&L
  (p - average cost) x quantity booked, no commission), every working order on the instrument is
  cancelled with the reason, and from T on the instrument is not tradable: ``tradable_targets``
  drops it from every later target.

Several actions of one instrument on one session apply in the order dividend, split, delisting (a
dividend is per share held at the previous close, before the same day's split).

Each action that touches the book (a position, or a working order) gives one ``AppliedAction``,
the content of an ``executed_actions`` row: ``action_type`` SPLIT / DIVIDEND / DELISTING,
``quantity`` the signed position the action applied to (before it), ``price`` the dividend or the
delisting price (null for a split), ``notional`` the cash the action credited to the book
(negative: debited; a split's cash in lieu, 0.0 without a fraction), and ``metadata`` a JSON
document with the corporate action's id and what changed. Both backtest engines, and later a
live book, apply actions through ``apply_corporate_actions`` over a ``CorporateActionBook``, so
they move the book and write the rows identically.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import polars as pl

from prometheus_lib.errors import DataValidationError, ExecutionError, InvalidValueError
from prometheus_lib.execution.domain import InstrumentId, non_negative, position_after, positive

# A split ratio times a whole number of shares is a whole number up to float noise (30 x 0.1 =
# 3.0000000000000004); within this relative distance of a whole number it is that number.
_SHARE_EPSILON = 1e-9


class CorporateActionType(enum.StrEnum):
    """What a corporate action does to a holding."""

    SPLIT = "SPLIT"
    DIVIDEND = "DIVIDEND"
    DELISTING = "DELISTING"


# The order actions of one instrument on one session are applied in (see the module docstring).
_APPLY_ORDER = {CorporateActionType.DIVIDEND: 0, CorporateActionType.SPLIT: 1, CorporateActionType.DELISTING: 2}


@dataclass(frozen=True, slots=True)
class CorporateAction:
    """One corporate action on its ex-date session (a row of ``historical.corporate_actions``)."""

    action_id: str
    instrument_id: InstrumentId
    session_date: date
    action_type: CorporateActionType
    ratio: float | None = None
    amount: float | None = None

    def __post_init__(self) -> None:
        where = f"corporate action {self.action_id!r}"
        if not isinstance(self.action_id, str) or not self.action_id:
            raise InvalidValueError(f"corporate action_id must be a non-empty string, was {self.action_id!r}")
        try:
            kind = CorporateActionType(self.action_type)
        except ValueError:
            raise InvalidValueError(
                f"{where}: action_type must be SPLIT, DIVIDEND or DELISTING, was {self.action_type!r}"
            ) from None
        object.__setattr__(self, "action_type", kind)
        if not isinstance(self.instrument_id, InstrumentId):
            object.__setattr__(self, "instrument_id", InstrumentId(str(self.instrument_id)))
        if kind is CorporateActionType.SPLIT:
            if self.ratio is None:
                raise InvalidValueError(f"{where}: a SPLIT needs a ratio (new shares per old share), was None")
            object.__setattr__(self, "ratio", positive(self.ratio, f"{where} ratio"))
        else:
            if self.amount is None:
                raise InvalidValueError(f"{where}: a {kind.value} needs an amount (cash per share), was None")
            object.__setattr__(self, "amount", non_negative(self.amount, f"{where} amount"))

    @property
    def sort_key(self) -> tuple:
        """Session, instrument, then dividend / split / delisting, then id: the order actions apply in."""
        return (self.session_date, self.instrument_id.value, _APPLY_ORDER[self.action_type], self.action_id)


CORPORATE_ACTION_COLUMNS = ("action_id", "instrument_id", "session_date", "action_type", "ratio", "amount")


def corporate_actions_from_frame(frame: pl.DataFrame) -> tuple[CorporateAction, ...]:
    """Return the actions of ``corporate_actions`` rows, in the order they apply.

    Raises
    ------
    DataValidationError
        If a column is missing or a row is not a valid action; the message names its action_id.
    """
    missing = [c for c in CORPORATE_ACTION_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(f"corporate_actions is missing columns {missing}; need {CORPORATE_ACTION_COLUMNS}")
    out = []
    for row in frame.select(CORPORATE_ACTION_COLUMNS).iter_rows(named=True):
        try:
            out.append(CorporateAction(**row))
        except InvalidValueError as err:
            raise DataValidationError(f"corporate_actions row {row['action_id']!r}: {err}") from None
    return tuple(sorted(out, key=lambda a: a.sort_key))


def tradable_targets(weights: Mapping[InstrumentId, float], delisted: Iterable[str]) -> Mapping[InstrumentId, float]:
    """``weights`` without the instruments in ``delisted`` (not tradable after their delisting)."""
    gone = delisted if isinstance(delisted, frozenset | set) else frozenset(delisted)
    if not gone or not any(str(i) in gone for i in weights):
        return weights
    return {i: w for i, w in weights.items() if str(i) not in gone}


# ---------------------------------------------------------------- the arithmetic


@dataclass(frozen=True, slots=True)
class HoldingChange:
    """A holding after an action: quantity, average cost, realised P&L, last price (NaN: none
    known), the cash credited to the book, and the split's fractional shares paid in lieu."""

    quantity: float
    average_cost: float
    realized_pnl: float
    last_price: float
    cash: float
    fractional_shares: float = 0.0
    cash_in_lieu_price: float | None = None


def _whole(shares: float) -> float:
    """``shares`` rounded toward zero to whole shares (float noise of a ratio forgiven)."""
    nearest = round(shares)
    if abs(shares - nearest) <= _SHARE_EPSILON * max(1.0, abs(shares)):
        return float(nearest)
    return float(math.trunc(shares))


def holding_after(action: CorporateAction, quantity: float, average_cost: float, realized_pnl: float,
                  last_price: float) -> HoldingChange:
    """The holding ``(quantity, average_cost, realized_pnl, last_price)`` after ``action``; see the module docstring."""
    kind = action.action_type
    if kind is CorporateActionType.DIVIDEND:
        return HoldingChange(quantity, average_cost, realized_pnl, last_price, quantity * action.amount)
    if kind is CorporateActionType.DELISTING:
        q1, c1, r1 = position_after(quantity, average_cost, realized_pnl, -quantity, action.amount)
        return HoldingChange(q1, c1, r1, last_price, quantity * action.amount)
    ratio = action.ratio
    raw = quantity * ratio
    cost = average_cost / ratio
    price = last_price / ratio
    whole = _whole(raw)
    fraction = raw - whole  # exact: x - trunc(x) is representable
    if fraction == 0.0:
        return HoldingChange(whole, cost if whole != 0.0 else 0.0, realized_pnl, price, 0.0)
    # the fraction is sold (a short buys it back) at the price the book values it at
    in_lieu = price if (math.isfinite(price) and price > 0) else cost
    realized = realized_pnl + fraction * (in_lieu - cost)
    return HoldingChange(whole, cost if whole != 0.0 else 0.0, realized, price, fraction * in_lieu, fraction, in_lieu)


@dataclass(frozen=True, slots=True)
class OrderChange:
    """A working order after an action: its restated terms, or the reason it is cancelled."""

    quantity: float
    filled_quantity: float
    average_fill_price: float | None
    limit_price: float | None
    stop_price: float | None
    cancel_reason: str | None = None


def order_after(action: CorporateAction, quantity: float, filled_quantity: float, average_fill_price: float | None,
                limit_price: float | None = None, stop_price: float | None = None) -> OrderChange | None:
    """A working order's terms after ``action`` (None: the action leaves orders alone, a dividend)."""
    kind = action.action_type
    if kind is CorporateActionType.DIVIDEND:
        return None
    if kind is CorporateActionType.DELISTING:
        reason = (f"{action.instrument_id} delisted on {action.session_date} at {action.amount:g} per share "
                  f"(corporate action {action.action_id}); order cancelled")
        return OrderChange(quantity, filled_quantity, average_fill_price, limit_price, stop_price, reason)
    ratio = action.ratio
    remaining = max(quantity - filled_quantity, 0.0)
    rest = _whole(remaining * ratio)
    filled = filled_quantity * ratio
    change = OrderChange(
        filled + rest, filled,
        None if average_fill_price is None else average_fill_price / ratio,
        None if limit_price is None else limit_price / ratio,
        None if stop_price is None else stop_price / ratio,
    )
    if rest < 1.0:
        reason = (f"{action.instrument_id} split {ratio:g} new shares per old on {action.session_date} "
                  f"(corporate action {action.action_id}): the remaining {remaining:g} shares become "
                  f"{remaining * ratio:g}, less than one share; cancelled")
        # the order is cancelled on its old terms: a restated quantity of 0 is not an order
        return OrderChange(quantity, filled_quantity, average_fill_price, limit_price, stop_price, reason)
    return change


# ---------------------------------------------------------------- applying to a book


class CorporateActionBook(Protocol):
    """What ``apply_corporate_actions`` needs of a book (each engine adapts its own state)."""

    def holding(self, instrument_id: InstrumentId) -> tuple[float, float, float, float]:
        """``(quantity, average_cost, realized_pnl, last_price)``; zeros and NaN when never held."""

    def set_holding(self, instrument_id: InstrumentId, change: HoldingChange) -> None:
        """Store the holding of ``change`` and credit ``change.cash`` to the book's cash."""

    def working_orders(self, instrument_id: InstrumentId) -> Sequence[tuple[Hashable, float, float, float | None,
                                                                          float | None, float | None]]:
        """``(handle, quantity, filled_quantity, average_fill_price, limit_price, stop_price)`` of each
        working order on the instrument, in the book's order."""

    def set_order(self, handle: Hashable, change: OrderChange) -> None:
        """Restate the order ``handle`` with ``change``, or cancel it when ``change.cancel_reason`` is set."""


@dataclass(frozen=True, slots=True)
class AppliedAction:
    """What an action did to a book: the varying columns of its ``executed_actions`` row."""

    action: CorporateAction
    quantity: float
    price: float | None
    notional: float
    metadata: str

    @property
    def action_type(self) -> str:
        """SPLIT, DIVIDEND or DELISTING."""
        return self.action.action_type.value

    def action_id(self, run_id: str, portfolio_id: str) -> str:
        """The ``executed_actions`` id: unique per run and book, as order ids are."""
        return f"{run_id}:{portfolio_id}:{self.action.action_id}"


def check_action_sessions(actions: Sequence[CorporateAction], as_of: date | None, portfolio_id: object) -> None:
    """Raise unless every action's ex-date is after ``as_of``, the last session the book was processed to.

    Raises
    ------
    ExecutionError
        If an action would apply to a book that already traded through its ex-date.
    """
    for action in actions:
        if as_of is not None and action.session_date <= as_of:
            raise ExecutionError(
                f"corporate action {action.action_id} of {action.session_date} comes after the book of "
                f"portfolio {portfolio_id} was processed to {as_of}; apply it before its session's fills"
            )


def apply_corporate_actions(actions: Sequence[CorporateAction], book: CorporateActionBook) -> list[AppliedAction]:
    """Apply ``actions`` (one session's, in ``sort_key`` order) to ``book``; return what each did.

    An action that finds neither a position nor a working order on its instrument changes nothing
    and gives no ``AppliedAction``. See the module docstring for the rules.
    """
    applied = []
    for action in actions:
        iid = action.instrument_id
        quantity, cost, realized, last = book.holding(iid)
        restated = cancelled = 0
        for handle, oq, filled, average, limit, stop in book.working_orders(iid):
            change = order_after(action, oq, filled, average, limit, stop)
            if change is None:
                continue
            book.set_order(handle, change)
            if change.cancel_reason is None:
                restated += 1
            else:
                cancelled += 1
        if quantity == 0.0 and not (restated or cancelled):
            continue
        change = holding_after(action, quantity, cost, realized, last)
        if quantity != 0.0:
            book.set_holding(iid, change)
        kind = action.action_type
        metadata = json.dumps({
            "corporate_action_id": action.action_id, "ratio": action.ratio, "amount": action.amount,
            "quantity_after": change.quantity, "average_cost_after": change.average_cost, "cash": change.cash,
            "realized_pnl": change.realized_pnl - realized, "fractional_shares": change.fractional_shares,
            "cash_in_lieu_price": change.cash_in_lieu_price, "orders_restated": restated,
            "orders_cancelled": cancelled,
        })
        price = None if kind is CorporateActionType.SPLIT else action.amount
        applied.append(AppliedAction(action, quantity, price, change.cash, metadata))
    return applied

