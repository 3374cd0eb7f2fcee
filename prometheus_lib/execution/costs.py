"""Transaction costs of a simulated fill: slippage (the price paid) and commission (the fee).

Slippage moves the fill price against the order: a buy pays ``reference * (1 + fraction)``, a
sell receives ``reference * (1 - fraction)``, and the cost is reported as
``slippage_bps = fraction * 1e4`` (always >= 0). Commission is a cash fee charged **per fill**:
when an order fills in parts over several sessions (volume cap, carried remainder) each part pays
the model's minimum on its own, as a broker that executes the parts as separate orders would.

Both kinds are pure: the one piece of state a fee depends on, the portfolio's shares traded so far
in the calendar month (IBKR tiered), is passed in by the caller, which owns the book.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from prometheus_lib.config.models import CommissionConfig, SlippageConfig
from prometheus_lib.errors import ConfigError, InvalidValueError
from prometheus_lib.execution.domain import OrderSide, non_negative, positive

# An impact this large means the model is far outside the range it was fitted on; capping it keeps
# a sell's fill price positive (a fraction of 1 would fill at zero).
MAX_SLIPPAGE_FRACTION = 0.5


# ---------------------------------------------------------------- slippage


class SlippageModel(ABC):
    """A rule giving the fill price of an order from its reference price."""

    __slots__ = ()

    def fill_price(
        self,
        side: OrderSide,
        reference_price: float,
        quantity: float,
        session_volume: float = math.nan,
        daily_volatility: float = math.nan,
    ) -> tuple[float, float]:
        """Return the fill price and the slippage in basis points for one fill.

        Parameters
        ----------
        side
            BUY pays up (``reference * (1 + fraction)``), SELL receives less
            (``reference * (1 - fraction)``).
        reference_price
            The price the fill is taken against (the session's close or open), > 0.
        quantity
            Shares filled, >= 0.
        session_volume
            Shares traded in the session; NaN when unknown.
        daily_volatility
            Volatility of daily returns known at the session (0.02 = 2 %); NaN when unknown.

        Returns
        -------
        tuple[float, float]
            ``(price, slippage_bps)`` with ``slippage_bps = fraction * 1e4 >= 0``.

        Raises
        ------
        InvalidValueError
            If ``reference_price`` is not a finite positive number or ``quantity`` is negative.
        """
        reference = positive(reference_price, "reference_price")
        shares = non_negative(quantity, "quantity")
        return self.fill_price_checked(side.sign, reference, shares, float(session_volume), float(daily_volatility))

    def fill_price_checked(
        self, sign: int, reference_price: float, quantity: float, session_volume: float, daily_volatility: float
    ) -> tuple[float, float]:
        """``fill_price`` for arguments the caller has already checked (a float reference price > 0,
        a quantity >= 0, floats for volume and volatility) and the side's sign; the columnar
        backtest engine's inner loop calls it."""
        fraction = min(self.fraction(quantity, session_volume, daily_volatility), MAX_SLIPPAGE_FRACTION)
        return reference_price * (1.0 + sign * fraction), fraction * 1e4

    @abstractmethod
    def fraction(self, quantity: float, session_volume: float, daily_volatility: float) -> float:
        """Return the adverse price move as a fraction of the reference price (>= 0)."""


@dataclass(frozen=True, slots=True)
class NoSlippage(SlippageModel):
    """Fill at the reference price: ``fraction = 0``."""

    def fraction(self, quantity: float, session_volume: float, daily_volatility: float) -> float:
        """Return 0."""
        return 0.0


@dataclass(frozen=True, slots=True)
class FixedBpsSlippage(SlippageModel):
    """A fixed half-spread: ``fraction = bps / 1e4`` whatever the size."""

    bps: float

    def __post_init__(self) -> None:
        non_negative(self.bps, "FixedBpsSlippage.bps")

    def fraction(self, quantity: float, session_volume: float, daily_volatility: float) -> float:
        """Return ``bps / 1e4``."""
        return self.bps / 1e4


@dataclass(frozen=True, slots=True)
class SquareRootImpactSlippage(SlippageModel):
    """Square-root market impact plus a fixed half-spread.

    ``fraction = bps / 1e4 + impact_coefficient * daily_volatility * sqrt(quantity / session_volume)``

    (Almgren et al. 2005; Tóth et al. 2011). When the volatility or the volume is unknown (NaN,
    or out of range: a negative volatility, a volume <= 0), the impact term is dropped and only
    the fixed ``bps`` applies. The total fraction is capped at ``MAX_SLIPPAGE_FRACTION``.
    """

    bps: float
    impact_coefficient: float

    def __post_init__(self) -> None:
        non_negative(self.bps, "SquareRootImpactSlippage.bps")
        non_negative(self.impact_coefficient, "SquareRootImpactSlippage.impact_coefficient")

    def fraction(self, quantity: float, session_volume: float, daily_volatility: float) -> float:
        """Return ``bps / 1e4 + impact_coefficient * daily_volatility * sqrt(quantity / session_volume)``."""
        spread = self.bps / 1e4
        known = math.isfinite(session_volume) and session_volume > 0 and math.isfinite(daily_volatility)
        if not known or daily_volatility < 0:
            return spread
        return spread + self.impact_coefficient * daily_volatility * math.sqrt(quantity / session_volume)


def build_slippage_model(config: SlippageConfig) -> SlippageModel:
    """Build the slippage model ``config.model`` names.

    Raises
    ------
    ConfigError
        If ``config.model`` is not one of ``none``, ``fixed_bps``, ``sqrt_impact``.
    """
    if config.model == "none":
        return NoSlippage()
    if config.model == "fixed_bps":
        return FixedBpsSlippage(config.bps)
    if config.model == "sqrt_impact":
        return SquareRootImpactSlippage(config.bps, config.impact_coefficient)
    raise ConfigError(f"slippage.model must be one of none, fixed_bps, sqrt_impact, was {config.model!r}")


# ---------------------------------------------------------------- commission


class CommissionModel(ABC):
    """A rule giving the fee of one fill."""

    __slots__ = ()

    def commission(self, quantity: float, price: float, month_to_date_shares: float = 0.0) -> float:
        """Return the commission of one fill of ``quantity`` shares at ``price`` (>= 0).

        Parameters
        ----------
        quantity
            Shares filled, >= 0.
        price
            Fill price, > 0.
        month_to_date_shares
            Shares the portfolio traded earlier in the same calendar month, before this fill
            (only the IBKR tiered model reads it).

        Raises
        ------
        InvalidValueError
            If an argument is NaN, infinite or out of range.
        """
        return self.commission_checked(non_negative(quantity, "quantity"), positive(price, "price"),
                                       non_negative(month_to_date_shares, "month_to_date_shares"))

    @abstractmethod
    def commission_checked(self, quantity: float, price: float, month_to_date_shares: float) -> float:
        """``commission`` for float arguments the caller has already checked (quantity >= 0,
        price > 0, month_to_date_shares >= 0); the columnar backtest engine's inner loop calls it."""


@dataclass(frozen=True, slots=True)
class NoCommission(CommissionModel):
    """No fee: ``commission = 0``."""

    def commission_checked(self, quantity: float, price: float, month_to_date_shares: float) -> float:
        """Return 0."""
        return 0.0


@dataclass(frozen=True, slots=True)
class PerShareCommission(CommissionModel):
    """A fee per share with a minimum, capped at a share of value.

    ``commission = min(max(per_share * quantity, minimum), maximum_pct * quantity * price)``

    The cap wins over the minimum: a fill worth less than ``minimum / maximum_pct`` pays
    ``maximum_pct`` of its value (IBKR's rule for its per-order maximum).
    """

    per_share: float
    minimum: float
    maximum_pct: float

    def __post_init__(self) -> None:
        non_negative(self.per_share, "PerShareCommission.per_share")
        non_negative(self.minimum, "PerShareCommission.minimum")
        positive(self.maximum_pct, "PerShareCommission.maximum_pct")

    def commission_checked(self, quantity: float, price: float, month_to_date_shares: float) -> float:
        """Return ``min(max(per_share * quantity, minimum), maximum_pct * quantity * price)``."""
        return _per_share_fee(quantity, price, self.per_share, self.minimum, self.maximum_pct)


@dataclass(frozen=True, slots=True)
class BpsCommission(CommissionModel):
    """A fee proportional to value: ``commission = bps / 1e4 * quantity * price``."""

    bps: float

    def __post_init__(self) -> None:
        non_negative(self.bps, "BpsCommission.bps")

    def commission_checked(self, quantity: float, price: float, month_to_date_shares: float) -> float:
        """Return ``bps / 1e4 * quantity * price``."""
        return self.bps / 1e4 * quantity * price


@dataclass(frozen=True, slots=True)
class IbkrTieredCommission(CommissionModel):
    """IBKR Pro tiered US stock commission, by the portfolio's shares traded this month.

    ``rate = tier rate of month_to_date_shares`` (the first tier with
    ``month_to_date_shares < shares_up_to``), then

    ``commission = min(max(rate * quantity, minimum), maximum_pct * quantity * price)``.

    The whole fill pays the rate of the tier the month's volume is in *before* the fill; a fill
    that crosses a tier boundary is not split. This is how IBKR applies tiers ("based on monthly
    cumulative trade volume ... at the time the commission is calculated"), and it keeps a fee a
    function of one number. The month's volume counts every share the portfolio traded, buys and
    sells, in all instruments; the caller resets it on the first fill of a new calendar month.
    Exchange, clearing and regulatory fees are not modelled.
    """

    tiers: tuple[tuple[float, float], ...]
    minimum: float
    maximum_pct: float

    def __post_init__(self) -> None:
        if not self.tiers:
            raise InvalidValueError("IbkrTieredCommission.tiers must not be empty")
        bounds = [float(up_to) for up_to, _ in self.tiers]
        if any(b <= 0 or math.isnan(b) for b in bounds) or bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise InvalidValueError(
                f"IbkrTieredCommission.tiers must have strictly increasing positive bounds, was {self.tiers!r}"
            )
        if bounds[-1] != math.inf:
            raise InvalidValueError(
                f"IbkrTieredCommission.tiers must end with an unbounded tier (inf), was {self.tiers!r}"
            )
        for _, rate in self.tiers:
            non_negative(rate, "IbkrTieredCommission tier rate")
        non_negative(self.minimum, "IbkrTieredCommission.minimum")
        positive(self.maximum_pct, "IbkrTieredCommission.maximum_pct")

    def rate(self, month_to_date_shares: float) -> float:
        """Return the per-share rate of the tier ``month_to_date_shares`` is in."""
        return self._rate(non_negative(month_to_date_shares, "month_to_date_shares"))

    def _rate(self, volume: float) -> float:
        for up_to, rate in self.tiers:
            if volume < up_to:
                return float(rate)
        return float(self.tiers[-1][1])  # unreachable: the last bound is inf

    def commission_checked(self, quantity: float, price: float, month_to_date_shares: float) -> float:
        """Return ``min(max(rate * quantity, minimum), maximum_pct * quantity * price)``."""
        return _per_share_fee(quantity, price, self._rate(month_to_date_shares), self.minimum, self.maximum_pct)


def _per_share_fee(shares: float, px: float, rate: float, minimum: float, maximum_pct: float) -> float:
    if shares == 0.0:
        return 0.0
    return min(max(rate * shares, minimum), maximum_pct * shares * px)


def build_commission_model(config: CommissionConfig) -> CommissionModel:
    """Build the commission model ``config.model`` names.

    Raises
    ------
    ConfigError
        If ``config.model`` is unknown or its tiers are malformed.
    """
    if config.model == "none":
        return NoCommission()
    if config.model == "per_share":
        return PerShareCommission(config.per_share, config.minimum, config.maximum_pct)
    if config.model == "bps":
        return BpsCommission(config.bps)
    if config.model == "ibkr_tiered":
        try:
            return IbkrTieredCommission(config.ibkr_tiers, config.ibkr_minimum, config.maximum_pct)
        except InvalidValueError as e:
            raise ConfigError(f"commission.ibkr_tiers: {e}") from None
    raise ConfigError(f"commission.model must be one of none, per_share, bps, ibkr_tiered, was {config.model!r}")
