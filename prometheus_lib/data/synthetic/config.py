"""The synthetic market's parameters: one frozen, validated config per market.

Every per-regime triple is (calm, volatile, crisis); annualised figures are turned into daily
ones with 261 weekdays a year (the world runs on weekdays; a holiday's move lands on the next
session). The defaults are calibrated so that ``bench/synthetic_facts.py`` prints stylized facts
inside their published ranges (Cont, 2001) for a 100-500 instrument market.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, model_validator

__all__ = ["REGIMES", "STYLE_FACTORS", "SyntheticMarketConfig", "WORLD_EPOCH"]

REGIMES = ("calm", "volatile", "crisis")
STYLE_FACTORS = ("size", "value", "quality")
WORLD_EPOCH = date(1990, 1, 1)  # a Monday: weekday ordinal 0 of every world

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Correlation = Annotated[float, Field(ge=-1.0, le=1.0)]
TransitionRow = tuple[Probability, Probability, Probability]
Transition = tuple[TransitionRow, TransitionRow, TransitionRow]
PerRegime = tuple[float, float, float]
PositivePerRegime = tuple[PositiveFloat, PositiveFloat, PositiveFloat]
NonNegativePerRegime = tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat]
PerStyle = tuple[float, float, float]
NonNegativePerStyle = tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat]
Range = tuple[PositiveFloat, PositiveFloat]


class SyntheticMarketConfig(BaseModel):
    """Parameters of one synthetic equity market (a region's exchange) and its world.

    Markets built with the same ``world_seed`` share one global regime chain and one global
    market shock; ``region`` picks the regional regime chain and market factor (two markets of
    one region share them). ``seed`` draws the market's own instruments and their paths.

    Raises
    ------
    pydantic.ValidationError
        If a field is out of range or a cross-field rule fails (transition rows must sum to 1,
        GARCH persistence must be < 1, ranges must be (low, high)); the message names the field
        and the bad value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Identity.
    seed: Annotated[int, Field(ge=0)] = 42
    n_instruments: Annotated[int, Field(ge=1, le=5000)] = 100
    n_sectors: Annotated[int, Field(ge=1, le=20)] = 10
    history_start: date = date(2015, 1, 2)
    market_id: Annotated[str, Field(min_length=1, max_length=64)] = "US_EQ"
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    calendar_code: Annotated[str, Field(min_length=1)] = "XNYS"
    country: Annotated[str, Field(min_length=1)] = "US"
    region: Annotated[str, Field(pattern=r"^[A-Z]{2,8}$")] = "US"
    # Prefix of every id the market generates (instruments SYN0001, issuers SYN-ISS-0001, news
    # SYN-NEWS-..., ...): markets sharing a warehouse need different prefixes.
    id_prefix: Annotated[str, Field(pattern=r"^[A-Z]{2,8}$")] = "SYN"
    # Markets built with the same world_seed share one global factor and global regime path.
    world_seed: Annotated[int, Field(ge=0)] = 2015

    # Regimes: the global chain, the region's own chain, and contagion from global to region.
    regime_transition: Transition = (
        (0.9960, 0.0036, 0.0004),
        (0.0300, 0.9620, 0.0080),
        (0.0050, 0.0300, 0.9650),
    )
    region_transition: Transition = (
        (0.9975, 0.0022, 0.0003),
        (0.0350, 0.9600, 0.0050),
        (0.0100, 0.0400, 0.9500),
    )
    region_contagion: Probability = 0.25  # daily chance a calmer region jumps to the global state
    regime_global_loading: tuple[Correlation, Correlation, Correlation] = (0.55, 0.70, 0.85)
    # The region's market factor: GJR-GARCH(1,1) with Student-t shocks, scaled per regime.
    regime_market_drift: PerRegime = (0.11, 0.0, -0.30)
    regime_market_vol: PositivePerRegime = (0.115, 0.19, 0.36)
    market_garch_alpha: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.03
    market_garch_gamma: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.10
    market_garch_beta: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.90
    tail_df: Annotated[float, Field(gt=2.0, le=1000.0)] = 5.0
    regime_sector_vol: NonNegativePerRegime = (0.05, 0.08, 0.14)
    regime_style_multiplier: NonNegativePerRegime = (1.0, 1.5, 2.5)
    regime_idio_multiplier: PositivePerRegime = (1.0, 1.15, 1.4)
    regime_jump_probability: tuple[Probability, Probability, Probability] = (0.002, 0.004, 0.010)
    regime_volume_multiplier: PositivePerRegime = (1.0, 1.2, 1.6)

    # Factor exposures and style factors (size, value, quality).
    beta_mean: float = 1.0
    beta_std: NonNegativeFloat = 0.25
    style_factor_drift: PerStyle = (0.0, 0.01, 0.02)
    style_factor_vol: NonNegativePerStyle = (0.04, 0.05, 0.03)

    # Idiosyncratic GARCH(1,1) with Student-t shocks, and jumps.
    idio_vol_median: Annotated[float, Field(gt=0.0, le=2.0)] = 0.25
    idio_vol_dispersion: Annotated[float, Field(ge=0.0, le=2.0)] = 0.40
    garch_alpha: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.06
    garch_beta: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.92
    jump_mean: float = -0.01
    jump_std: NonNegativeFloat = 0.06

    # Cross-section: Zipf-like market caps (the largest name's cap, the top ten's and the largest's
    # expected index share; the Zipf exponent meets both).
    largest_market_cap: PositiveFloat = 2.0e12
    top10_share: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.27
    largest_share: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    cap_noise: Annotated[float, Field(ge=0.0, le=2.0)] = 0.25
    cap_reversion_half_life_years: Annotated[float, Field(gt=0.0, le=200.0)] = 2.5
    price_start_range: Range = (20.0, 300.0)
    split_above: PositiveFloat = 500.0
    reverse_split_below: PositiveFloat = 1.0

    # Bars and volume.
    overnight_share: Probability = 0.3
    daily_turnover: Annotated[float, Field(gt=0.0, le=1.0)] = 0.006

    # Lifecycle: IPOs, delistings, halts, dividends.
    ipo_fraction: Probability = 0.1
    ipo_window_sessions: Annotated[int, Field(ge=1, le=10_000)] = 1260
    delisting_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.03  # per instrument per year
    relisting_gap_sessions: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (20, 250)
    halt_rate: Probability = 0.0004  # per listed instrument per session
    dividend_payer_fraction: Probability = 0.6
    dividend_yield_range: tuple[NonNegativeFloat, NonNegativeFloat] = (0.005, 0.04)

    # Planted signals. Strengths are the target oracle rank IC against the next 21 sessions'
    # return (the generator reports the realised one: SyntheticMarket.oracle_ics).
    momentum_strength: Annotated[float, Field(ge=0.0, le=0.5)] = 0.03
    low_vol_strength: Annotated[float, Field(ge=0.0, le=0.5)] = 0.02
    pead_strength: Annotated[float, Field(ge=0.0, le=0.5)] = 0.05
    pead_drift_sessions: Annotated[int, Field(ge=1, le=252)] = 60
    announcement_vol: NonNegativeFloat = 2.0  # earnings-day surprise move, in daily idio vols
    fragility_rate: Annotated[float, Field(ge=0.0, le=2.0)] = 0.08  # events per instrument-year (calm)
    regime_fragility_multiplier: PositivePerRegime = (1.0, 2.0, 4.0)
    fragility_precursor_sessions: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (15, 40)
    fragility_crash_sessions: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (1, 5)
    fragility_drawdown: tuple[Probability, Probability] = (0.25, 0.55)

    # Text and events.
    news_rate: Annotated[float, Field(ge=0.0, le=10.0)] = 0.03
    news_sentiment_link: Correlation = 0.3
    news_forward_sessions: Annotated[int, Field(ge=1, le=63)] = 5
    filing_8k_rate: Probability = 0.004

    @model_validator(mode="after")
    def _check_cross_fields(self) -> SyntheticMarketConfig:
        for field in ("regime_transition", "region_transition"):
            for name, row in zip(REGIMES, getattr(self, field), strict=True):
                if not math.isclose(sum(row), 1.0, abs_tol=1e-6):
                    raise ValueError(
                        f"{field} row {name!r} must sum to 1, was {list(row)} (sum {sum(row):.6g})"
                    )
        if self.garch_alpha + self.garch_beta >= 1.0:
            raise ValueError(
                "garch_alpha + garch_beta must be < 1 for a stationary GARCH(1,1), was "
                f"{self.garch_alpha} + {self.garch_beta} = {self.garch_alpha + self.garch_beta:.6g}"
            )
        persistence = self.market_garch_alpha + self.market_garch_beta + self.market_garch_gamma / 2
        if persistence >= 1.0:
            raise ValueError(
                "market_garch_alpha + market_garch_beta + market_garch_gamma / 2 must be < 1, was "
                f"{persistence:.6g}"
            )
        for field in ("price_start_range", "relisting_gap_sessions", "fragility_precursor_sessions",
                      "fragility_crash_sessions", "fragility_drawdown", "dividend_yield_range"):
            lo, hi = getattr(self, field)
            if lo > hi:
                raise ValueError(f"{field} must be (low, high) with low <= high, was {(lo, hi)}")
        if self.reverse_split_below * 4 >= self.split_above:
            raise ValueError(
                f"reverse_split_below ({self.reverse_split_below}) must be well below split_above "
                f"({self.split_above}): at most a quarter of it"
            )
        if self.history_start < WORLD_EPOCH:
            raise ValueError(f"history_start must be on or after {WORLD_EPOCH}, was {self.history_start}")
        return self
