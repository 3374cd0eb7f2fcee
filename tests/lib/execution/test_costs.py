"""Specification of transaction costs: slippage prices and commission fees, with hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from prometheus_lib.config.models import CommissionConfig, SlippageConfig
from prometheus_lib.errors import ConfigError, InvalidValueError
from prometheus_lib.execution.costs import (
    BpsCommission,
    FixedBpsSlippage,
    IbkrTieredCommission,
    NoCommission,
    NoSlippage,
    PerShareCommission,
    SquareRootImpactSlippage,
    build_commission_model,
    build_slippage_model,
)
from prometheus_lib.execution.domain import OrderSide

BUY, SELL = OrderSide.BUY, OrderSide.SELL
NAN = math.nan
INF = math.inf
IBKR = IbkrTieredCommission(
    ((300_000, 0.0035), (3_000_000, 0.0020), (20_000_000, 0.0015), (100_000_000, 0.0010), (INF, 0.0005)),
    minimum=0.35,
    maximum_pct=0.01,
)


# ------------------------------------------------------------------ slippage
@pytest.mark.parametrize(
    ("side", "expected_price"),
    [(BUY, 100.10), (SELL, 99.90)],
)
def test_fill_price_with_fixed_bps_moves_price_against_order(side: OrderSide, expected_price: float) -> None:
    # Arrange
    model = FixedBpsSlippage(10.0)

    # Act
    price, bps = model.fill_price(side, 100.0, 500.0, 1_000_000.0, 0.02)

    # Assert
    assert price == pytest.approx(expected_price, rel=1e-12)
    assert bps == pytest.approx(10.0)


def test_fill_price_with_no_slippage_returns_reference_price() -> None:
    # Act
    price, bps = NoSlippage().fill_price(SELL, 42.5, 1_000.0)

    # Assert
    assert (price, bps) == (42.5, 0.0)


@pytest.mark.parametrize(
    ("side", "reference", "quantity", "volume", "volatility", "bps", "coefficient", "expected_price", "expected_bps"),
    [
        # 5 bps + 0.1 * 0.02 * sqrt(10_000 / 1_000_000) = 0.0005 + 0.0002 = 0.0007
        (BUY, 50.0, 10_000.0, 1_000_000.0, 0.02, 5.0, 0.1, 50.035, 7.0),
        (SELL, 50.0, 10_000.0, 1_000_000.0, 0.02, 5.0, 0.1, 49.965, 7.0),
        # 5 bps + 0.2 * 0.03 * sqrt(0.25) = 0.0005 + 0.003 = 0.0035
        (BUY, 200.0, 250_000.0, 1_000_000.0, 0.03, 5.0, 0.2, 200.7, 35.0),
        # no spread: 1.0 * 0.04 * sqrt(40_000 / 160_000) = 0.02
        (SELL, 10.0, 40_000.0, 160_000.0, 0.04, 0.0, 1.0, 9.8, 200.0),
    ],
)
def test_fill_price_with_sqrt_impact_adds_impact_to_half_spread(
    side: OrderSide, reference: float, quantity: float, volume: float, volatility: float, bps: float,
    coefficient: float, expected_price: float, expected_bps: float,
) -> None:
    # Arrange
    model = SquareRootImpactSlippage(bps, coefficient)

    # Act
    price, slippage_bps = model.fill_price(side, reference, quantity, volume, volatility)

    # Assert
    assert price == pytest.approx(expected_price, rel=1e-12)
    assert slippage_bps == pytest.approx(expected_bps, rel=1e-12)


@pytest.mark.parametrize(
    ("volume", "volatility"),
    [(NAN, 0.02), (1_000_000.0, NAN), (NAN, NAN), (0.0, 0.02), (1_000_000.0, -0.02)],
    ids=["nan-volume", "nan-volatility", "both-nan", "zero-volume", "negative-volatility"],
)
def test_fill_price_with_sqrt_impact_and_unknown_inputs_falls_back_to_fixed_bps(
    volume: float, volatility: float
) -> None:
    # Arrange
    model = SquareRootImpactSlippage(5.0, 0.1)

    # Act
    price, bps = model.fill_price(BUY, 100.0, 10_000.0, volume, volatility)

    # Assert
    assert price == pytest.approx(100.05, rel=1e-12)
    assert bps == pytest.approx(5.0)


def test_fill_price_with_huge_impact_caps_fraction_at_half() -> None:
    # Arrange: 10 * 1.0 * sqrt(1) = 1000 % before the cap
    model = SquareRootImpactSlippage(0.0, 10.0)

    # Act
    price, bps = model.fill_price(SELL, 80.0, 1_000.0, 1_000.0, 1.0)

    # Assert
    assert price == pytest.approx(40.0)
    assert bps == pytest.approx(5_000.0)


@pytest.mark.parametrize(("reference", "quantity"), [(0.0, 10.0), (NAN, 10.0), (-5.0, 10.0), (10.0, -1.0)])
def test_fill_price_with_invalid_input_raises_invalid_value_error(reference: float, quantity: float) -> None:
    # Act / Assert
    with pytest.raises(InvalidValueError, match="reference_price|quantity"):
        FixedBpsSlippage(5.0).fill_price(BUY, reference, quantity)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (SlippageConfig(model="none"), NoSlippage()),
        (SlippageConfig(model="fixed_bps", bps=7.5), FixedBpsSlippage(7.5)),
        (SlippageConfig(model="sqrt_impact", bps=2.0, impact_coefficient=0.3), SquareRootImpactSlippage(2.0, 0.3)),
    ],
)
def test_build_slippage_model_with_config_returns_named_model(config: SlippageConfig, expected: object) -> None:
    # Act / Assert
    assert build_slippage_model(config) == expected


# ------------------------------------------------------------------ commission
@pytest.mark.parametrize(
    ("quantity", "price", "expected"),
    [
        (1_000.0, 50.0, 5.0),  # 0.005 * 1000
        (100.0, 50.0, 1.0),  # 0.50 -> minimum 1.00
        (1_000.0, 0.2, 2.0),  # 5.00 -> capped at 1 % of 200
        (10.0, 5.0, 0.5),  # minimum 1.00 above the 1 % cap of 50: the cap wins
        (0.0, 50.0, 0.0),  # nothing traded, nothing charged
    ],
    ids=["rate", "minimum", "maximum", "cap-beats-minimum", "zero"],
)
def test_commission_with_per_share_applies_minimum_and_maximum(quantity: float, price: float, expected: float) -> None:
    # Arrange
    model = PerShareCommission(per_share=0.005, minimum=1.0, maximum_pct=0.01)

    # Act
    fee = model.commission(quantity, price)

    # Assert
    assert fee == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("bps", "quantity", "price", "expected"), [(1.0, 1_000.0, 50.0, 5.0), (10.0, 3.0, 20.0, 0.06)])
def test_commission_with_bps_charges_share_of_value(bps: float, quantity: float, price: float, expected: float) -> None:
    # Act
    fee = BpsCommission(bps).commission(quantity, price)

    # Assert
    assert fee == pytest.approx(expected, rel=1e-12)


def test_commission_with_no_commission_returns_zero() -> None:
    # Act / Assert
    assert NoCommission().commission(1_000.0, 50.0, 5_000_000.0) == 0.0


@pytest.mark.parametrize(
    ("month_to_date_shares", "expected_rate"),
    [
        (0.0, 0.0035),
        (299_999.0, 0.0035),
        (300_000.0, 0.0020),  # the 300,001st share is in the second tier
        (2_999_999.0, 0.0020),
        (3_000_000.0, 0.0015),
        (20_000_000.0, 0.0010),
        (100_000_000.0, 0.0005),
        (5e9, 0.0005),
    ],
)
def test_rate_with_month_volume_returns_tier_rate(month_to_date_shares: float, expected_rate: float) -> None:
    # Act / Assert
    assert IBKR.rate(month_to_date_shares) == expected_rate


@pytest.mark.parametrize(
    ("quantity", "price", "month_to_date_shares", "expected"),
    [
        (1_000.0, 50.0, 0.0, 3.5),  # 0.0035 * 1000
        (1_000.0, 50.0, 299_500.0, 3.5),  # crosses 300,000 inside the fill: tier before the fill
        (1_000.0, 50.0, 300_000.0, 2.0),  # 0.0020 * 1000
        (1_000.0, 50.0, 3_500_000.0, 1.5),  # 0.0015 * 1000
        (50.0, 50.0, 0.0, 0.35),  # 0.175 -> minimum 0.35
        (100.0, 0.2, 0.0, 0.2),  # minimum 0.35 above the 1 % cap of 20: the cap wins
        (100_000.0, 0.3, 0.0, 300.0),  # 350.00 -> capped at 1 % of 30,000
    ],
)
def test_commission_with_ibkr_tiered_uses_tier_minimum_and_maximum(
    quantity: float, price: float, month_to_date_shares: float, expected: float
) -> None:
    # Act
    fee = IBKR.commission(quantity, price, month_to_date_shares)

    # Assert
    assert fee == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (CommissionConfig(model="none"), NoCommission()),
        (CommissionConfig(model="per_share", per_share=0.01, minimum=2.0, maximum_pct=0.005),
         PerShareCommission(0.01, 2.0, 0.005)),
        (CommissionConfig(model="bps", bps=3.0), BpsCommission(3.0)),
        (CommissionConfig(model="ibkr_tiered"), IBKR),
    ],
)
def test_build_commission_model_with_config_returns_named_model(config: CommissionConfig, expected: object) -> None:
    # Act / Assert
    assert build_commission_model(config) == expected


@pytest.mark.parametrize(
    "tiers",
    [((300_000, 0.0035),), ((3_000_000, 0.002), (300_000, 0.0035), (INF, 0.0005)), ((INF, -0.001),)],
    ids=["no-unbounded-tier", "unsorted", "negative-rate"],
)
def test_build_commission_model_with_malformed_tiers_raises_config_error(tiers: tuple) -> None:
    # Arrange
    config = CommissionConfig(model="ibkr_tiered", ibkr_tiers=tiers)

    # Act / Assert
    with pytest.raises(ConfigError, match="ibkr_tiers"):
        build_commission_model(config)


@pytest.mark.parametrize(("quantity", "price"), [(NAN, 10.0), (10.0, 0.0), (-1.0, 10.0)])
def test_commission_with_invalid_input_raises_invalid_value_error(quantity: float, price: float) -> None:
    # Act / Assert
    with pytest.raises(InvalidValueError):
        IBKR.commission(quantity, price)
