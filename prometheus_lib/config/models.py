"""Typed, frozen configuration: markets, strategies, engines and the warehouse.

Every model forbids unknown keys and is immutable. Secrets and URLs never live here: a config
names the environment variable that holds them (for example ``url_env``), and the Dagster layer
reads it with ``EnvVar``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from prometheus_lib.data.synthetic import SyntheticMarketConfig


class FrozenModel(BaseModel):
    """Base of every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def config_hash(self) -> str:
        """Return a stable 16-hex-digit hash of the config's content."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


Identifier = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$", max_length=64)]
Identifier_lower = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)]


class DataSourceConfig(FrozenModel):
    """Where a market's daily data comes from."""

    kind: Literal["synthetic", "file", "yfinance"] = "synthetic"
    synthetic: SyntheticMarketConfig | None = None
    paths: tuple[str, ...] = ()  # file: files, directories or globs (relative to PROMETHEUS_HOME)
    instrument_master: str | None = None
    tickers: tuple[str, ...] = ()  # yfinance

    @model_validator(mode="after")
    def _check_kind(self) -> DataSourceConfig:
        if self.kind == "file" and not self.paths:
            raise ValueError("data_source.kind is 'file' but data_source.paths is empty")
        if self.kind == "yfinance" and not self.tickers:
            raise ValueError("data_source.kind is 'yfinance' but data_source.tickers is empty")
        return self


class DataLimitsConfig(FrozenModel):
    """Bounds on a market's input data, applied at ingestion (``data_limits`` of a market).

    ``min_price``/``max_price``: the plausible range of any price (open, high, low, close,
    adjusted close) in the market's currency; an imported row outside it, or not finite, is
    quarantined with its line, field and reason, and no provider's frame holding one is written.
    ``max_daily_move``: the ``price_jumps`` check (WARN, never a rejection) flags an adjusted
    close above ``1 + max_daily_move`` or below ``1 / (1 + max_daily_move)`` times the
    instrument's previous close (1.5: a rise over +150 % or a fall over -60 %).
    ``max_identifier_length``: longest ticker (and master instrument/issuer id) accepted; a
    longer one, or one with a control character, is quarantined. ``max_line_bytes``: longest CSV
    line read; a longer one is quarantined by number without being held in memory.
    """

    min_price: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-6
    max_price: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e8
    max_daily_move: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.5
    max_identifier_length: Annotated[int, Field(ge=1, le=256)] = 32
    max_line_bytes: Annotated[int, Field(ge=256, le=1 << 30)] = 65_536

    @model_validator(mode="after")
    def _check_range(self) -> DataLimitsConfig:
        if self.min_price >= self.max_price:
            raise ValueError(f"min_price ({self.min_price}) must be < max_price ({self.max_price})")
        return self


class MarketConfig(FrozenModel):
    """One market: its exchange calendar, daily-cycle windows and data source."""

    market_id: Identifier
    name: str
    calendar: str
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    asset_class: Literal["EQUITY", "FUTURE", "FX", "CREDIT", "MULTI"]
    region: str
    pre_open_minutes: Annotated[int, Field(ge=0, le=720)] = 90
    post_close_minutes: Annotated[int, Field(ge=0, le=720)] = 180
    history_start: date = date(2015, 1, 2)
    data_source: DataSourceConfig = DataSourceConfig()
    data_limits: DataLimitsConfig = DataLimitsConfig()

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, value: str) -> str:
        import exchange_calendars as xcals

        names = xcals.get_calendar_names(include_aliases=True)
        if value not in names:
            raise ValueError(f"unknown exchange calendar {value!r}; e.g. XNYS, XETR, XTKS, CMES, 24/5")
        return value

    @field_validator("history_start")
    @classmethod
    def _history_starts_in_the_past(cls, value: date) -> date:
        from datetime import datetime, timezone

        today = datetime.now(timezone.utc).date()
        if not date(1970, 1, 1) <= value <= today:
            raise ValueError(f"must lie between 1970-01-01 and today ({today}): a history cannot start in the future")
        return value


class PortfolioConfig(FrozenModel):
    """A strategy's book."""

    portfolio_id: Identifier
    name: str
    base_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    initial_capital: Annotated[float, Field(gt=0)] = 10_000_000.0
    mode: Literal["BACKTEST", "PAPER", "LIVE"] = "BACKTEST"


class SlippageConfig(FrozenModel):
    """Slippage: none, a fixed number of basis points, or square-root market impact.

    ``sqrt_impact``: the price moves against the order by
    ``impact_coefficient * daily_volatility * sqrt(quantity / session_volume)`` (a fraction of
    the price), the square-root law of market impact (Almgren et al. 2005, Tóth et al. 2011).
    ``bps`` is added on top of it as a fixed half-spread.
    """

    model: Literal["none", "fixed_bps", "sqrt_impact"] = "fixed_bps"
    bps: Annotated[float, Field(ge=0, le=1000)] = 5.0
    impact_coefficient: Annotated[float, Field(ge=0, le=10)] = 0.1


class CommissionConfig(FrozenModel):
    """Commission per fill: none, per share with a minimum, bps of value, or IBKR tiered.

    ``per_share``: ``max(per_share * shares, minimum)``, capped at ``maximum_pct`` of value.
    ``bps``: ``bps / 1e4 * value``.
    ``ibkr_tiered``: IBKR Pro tiered US stock rates per share by the month's cumulative volume
    (``ibkr_tiers``: [shares up to, USD per share]), with IBKR's USD 0.35 minimum and 1 % of
    value maximum per order (https://www.interactivebrokers.com/en/pricing/commissions-stocks.php).
    Exchange, clearing and regulatory pass-through fees are not modelled.
    """

    model: Literal["none", "per_share", "bps", "ibkr_tiered"] = "ibkr_tiered"
    per_share: Annotated[float, Field(ge=0)] = 0.005
    minimum: Annotated[float, Field(ge=0)] = 1.0
    maximum_pct: Annotated[float, Field(gt=0, le=1)] = 0.01
    bps: Annotated[float, Field(ge=0, le=1000)] = 1.0
    ibkr_tiers: tuple[tuple[float, float], ...] = (
        (300_000, 0.0035),
        (3_000_000, 0.0020),
        (20_000_000, 0.0015),
        (100_000_000, 0.0010),
        (float("inf"), 0.0005),
    )
    ibkr_minimum: Annotated[float, Field(ge=0)] = 0.35


class ExecutionConfig(FrozenModel):
    """How orders are planned and filled in a backtest.

    Fills happen at the session's close (``fill_at: close``, decided on that close) or at the
    next session's open. ``max_participation`` caps a fill at that share of the session's
    volume; the rest is cancelled or carried to the next session (``remainder``).
    """

    fill_at: Literal["close", "next_open"] = "close"
    slippage: SlippageConfig = SlippageConfig()
    commission: CommissionConfig = CommissionConfig()
    max_participation: Annotated[float, Field(gt=0, le=1)] | None = 0.1
    remainder: Literal["cancel", "carry"] = "cancel"
    lot_size: PositiveInt = 1
    min_trade_value: Annotated[float, Field(ge=0)] = 1_000.0
    max_leverage: Annotated[float, Field(gt=0, le=10)] = 1.0
    cash_buffer: Annotated[float, Field(ge=0, lt=1)] = 0.0


class BaselineStrategyConfig(FrozenModel):
    """The baseline scoring: momentum (12-1) and low volatility, z-scored and combined.

    The score is ``momentum_weight * z(momentum) - low_vol_weight * z(vol_63d)``, both read from
    the factor panel (``instrument_factors_daily``: MOM is 12-1 momentum, 252 sessions skipping
    the last 21, LOWVOL the log 63-session volatility; their windows are the panel's, so there
    is no momentum window here to set); candidates
    need ``min_history_sessions`` of prices and an average daily traded value over
    ``liquidity_window`` sessions of at least ``min_adv_value``. Weights are inverse
    volatility, capped at the strategy's ``max_position_weight``.
    """

    momentum_weight: Annotated[float, Field(ge=0)] = 1.0
    low_vol_weight: Annotated[float, Field(ge=0)] = 1.0
    # "factors": the score above; "assessment": the strategy's assessment ensemble score at T
    # (instrument_scores of run assessment/<strategy>, written by its assessment asset).
    score_source: Literal["factors", "assessment"] = "factors"
    liquidity_window: PositiveInt = 21
    min_adv_value: Annotated[float, Field(ge=0)] = 1_000_000.0
    min_history_sessions: PositiveInt = 63
    volatility_floor: Annotated[float, Field(gt=0)] = 0.05
    outcome_horizon_sessions: PositiveInt = 21

    @model_validator(mode="after")
    def _check_windows(self) -> BaselineStrategyConfig:
        if self.momentum_weight == 0 and self.low_vol_weight == 0:
            raise ValueError("momentum_weight and low_vol_weight cannot both be 0")
        return self


class StrategyConfig(FrozenModel):
    """A strategy: the market it trades and its book."""

    strategy_id: Identifier
    name: str
    market_id: Identifier
    description: str = ""
    universe_size: PositiveInt = 50
    rebalance_every_sessions: PositiveInt = 1
    max_position_weight: Annotated[float, Field(gt=0, le=1)] = 0.05
    engine: Literal["baseline"] = "baseline"
    baseline: BaselineStrategyConfig = BaselineStrategyConfig()
    execution: ExecutionConfig = ExecutionConfig()
    benchmark_factor: Identifier = "MKT"
    portfolios: tuple[PortfolioConfig, ...] = ()

    @model_validator(mode="after")
    def _check_book(self) -> StrategyConfig:
        if not self.portfolios:
            raise ValueError(f"strategy {self.strategy_id} needs at least one portfolio")
        return self


class DataQualityConfig(FrozenModel):
    """Thresholds of the ingestion asset checks."""

    freshness_max_lag_sessions: Annotated[int, Field(ge=0)] = 1
    max_instrument_gap_share: Annotated[float, Field(ge=0, le=1)] = 0.0


class RegimeConfig(FrozenModel):
    """The regime engine (``prometheus_lib.regime``): a Gaussian HMM per market, describing its region.

    Fitted walk-forward on an anchored schedule; the posterior at T is the filtered one (data up
    to T only). The model and the features are described in ``prometheus_lib.regime.engine``.
    """

    # The K states, calmest first: fitted states are ordered by their stress score (see engine).
    state_names: tuple[Identifier_lower, ...] = ("calm", "volatile", "crisis")
    # Per-session features, each computed causally from the panel and standardised on the
    # training window: realised_vol (log trailing RMS of the market return), dispersion (log
    # robust cross-sectional std of the returns), volume (mean log traded value against its own
    # trailing median), avg_correlation, market_return, drawdown (log of the market index
    # against its running high).
    features: tuple[Literal["market_return", "realised_vol", "avg_correlation", "dispersion", "drawdown",
                            "volume"], ...] = ("dispersion",)
    covariance_type: Literal["diag", "full"] = "diag"
    # Trailing window (sessions) of the realised_vol feature.
    realised_vol_sessions: Annotated[int, Field(ge=2, le=252)] = 10
    # EWMA span (sessions) smoothing the dispersion and volume features; 1 = no smoothing (the HMM
    # filter itself pools sessions, and smoothing makes within-state noise persistent).
    smoothing_sessions: Annotated[int, Field(ge=1, le=63)] = 1
    # Trailing window (sessions, excluding T) of each instrument's median traded value (volume).
    volume_baseline_sessions: Annotated[int, Field(ge=21, le=1260)] = 252
    # Training window: every session from the panel's first ("expanding") or the last
    # rolling_sessions ("rolling"), up to and including the refit session.
    window: Literal["expanding", "rolling"] = "expanding"
    rolling_sessions: Annotated[int, Field(ge=126)] = 1260
    # Refits at panel rows k >= min_train_sessions with (k - min_train_sessions) % refit_every_sessions == 0.
    refit_every_sessions: Annotated[int, Field(ge=1)] = 63
    min_train_sessions: Annotated[int, Field(ge=63)] = 252
    # At a refit the filter restarts (new parameters, uniform prior) this many sessions before the refit session.
    burn_in_sessions: Annotated[int, Field(ge=21)] = 252
    # Sticky HMM: Dirichlet pseudo-counts of staying in a state, added to each row of the
    # transition matrix in EM (0 = maximum likelihood).
    stickiness_sessions: Annotated[float, Field(ge=0)] = 300.0
    max_iter: Annotated[int, Field(ge=1)] = 100
    seed: Annotated[int, Field(ge=0)] = 7
    # The naive baseline (prometheus_lib.regime.baseline): trailing window of its realised vol.
    baseline_vol_sessions: Annotated[int, Field(ge=2, le=252)] = 21

    @property
    def n_states(self) -> int:
        """K, the number of states."""
        return len(self.state_names)

    @model_validator(mode="after")
    def _check(self) -> RegimeConfig:
        if not 2 <= len(self.state_names) <= 6 or len(set(self.state_names)) != len(self.state_names):
            raise ValueError(f"regime.state_names must be 2 to 6 distinct names, was {list(self.state_names)}")
        if not self.features or len(set(self.features)) != len(self.features):
            raise ValueError(f"regime.features must be distinct and not empty, was {list(self.features)}")
        if self.window == "rolling" and self.rolling_sessions < self.min_train_sessions:
            raise ValueError(f"regime.rolling_sessions ({self.rolling_sessions}) must be at least "
                             f"min_train_sessions ({self.min_train_sessions})")
        return self


class StabilityConfig(FrozenModel):
    """The stability engine and soft-target classifier (``prometheus_lib.stability``).

    Windows are counted in panel sessions ending at (and including) the session scored. The
    components, the overall score and the classes are defined in ``prometheus_lib.stability``.
    """

    # Long window: own volatility history, volatility of volatility, volume variability, the
    # drawdown's trailing high, the long correlation to the market.
    window_sessions: Annotated[int, Field(ge=10)] = 63
    # Short window: recent volume, the short correlation to the market. An instrument needs this
    # many returns up to T for a row at T.
    short_window_sessions: Annotated[int, Field(ge=5)] = 21
    # Weights of the overall score (a weighted mean of the components).
    volatility_level_weight: Annotated[float, Field(ge=0)] = 1.0
    volatility_of_volatility_weight: Annotated[float, Field(ge=0)] = 1.0
    correlation_drift_weight: Annotated[float, Field(ge=0)] = 1.0
    liquidity_stability_weight: Annotated[float, Field(ge=0)] = 1.0
    drawdown_state_weight: Annotated[float, Field(ge=0)] = 1.0
    # Soft targets: softmax temperature over the class scores (each in [0, 1]); smaller is sharper.
    class_temperature: Annotated[float, Field(gt=0)] = 0.1
    # weak_profile is set when the instability (1 - overall stability) exceeds this.
    weak_profile_instability: Annotated[float, Field(ge=0, le=1)] = 0.5
    # The regime state whose probability tilts fragile instruments towards FRAGILE, and by how much
    # (added to the FRAGILE score: crisis_tilt x P(crisis_state) x high_fragility).
    crisis_state: Identifier_lower = "crisis"
    crisis_tilt: Annotated[float, Field(ge=0)] = 0.5

    @model_validator(mode="after")
    def _check(self) -> StabilityConfig:
        if self.short_window_sessions >= self.window_sessions:
            raise ValueError(f"stability.short_window_sessions ({self.short_window_sessions}) must be below "
                             f"window_sessions ({self.window_sessions})")
        weights = (self.volatility_level_weight, self.volatility_of_volatility_weight, self.correlation_drift_weight,
                   self.liquidity_stability_weight, self.drawdown_state_weight)
        if sum(weights) <= 0:
            raise ValueError("stability: at least one component weight must be positive")
        return self


class FragilityConfig(FrozenModel):
    """The fragility alpha engine (``prometheus_lib.fragility``): P(drawdown beyond a threshold within N sessions).

    A LightGBM classifier fitted walk-forward on the panel's own history: the label at t is the
    holder's worst total-return loss over t+1..t+N reaching ``drawdown_threshold``; the model
    fitted at panel row k (k = min_train_sessions + j * refit_every_sessions, anchored on the
    panel's first row) trains on rows ``[k - train_window_sessions, k - N - 1]`` (labels ended
    before k), one session in ``train_stride_sessions``, and scores rows k .. k + refit - 1.
    Fits are deterministic: same data and config, bit-identical scores.
    """

    horizon_sessions: Annotated[int, Field(ge=1, le=252)] = 20  # N
    drawdown_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.20  # the loss (a fraction) that counts
    refit_every_sessions: Annotated[int, Field(ge=1)] = 63
    min_train_sessions: Annotated[int, Field(ge=63)] = 252  # first fit at this panel row
    train_window_sessions: Annotated[int, Field(ge=63)] = 756  # rows k - window .. k - N - 1 train the fit at k
    train_stride_sessions: Annotated[int, Field(ge=1)] = 5  # train on rows t with t % stride == 0 (labels overlap)
    min_positive_labels: Annotated[int, Field(ge=1)] = 20  # a fit with fewer events is skipped (the last one holds)
    features: tuple[Literal[
        "vol_21", "vol_ratio", "ewma_ratio", "idio_vol_ratio", "vol_of_vol", "liquidity_trend", "stress_gap",
        "return_21", "return_63", "drawdown_63", "downside_ratio", "beta", "residual_vol",
        "vol_21_rank", "liquidity_trend_rank", "stress_gap_rank", "market_vol_21", "avg_correlation",
    ], ...] = (
        "vol_21", "vol_ratio", "ewma_ratio", "idio_vol_ratio", "liquidity_trend", "stress_gap", "return_21",
        "drawdown_63", "beta", "residual_vol", "downside_ratio", "vol_21_rank", "stress_gap_rank",
    )  # see prometheus_lib.fragility.features for each one's definition and as-of rule
    # Add the regime engine's filtered probabilities (regime_<state>) as features. The Dagster asset
    # then runs the regime engine over the whole history in memory (not the stored rows, which may
    # cover only part of it), so a session's score never depends on what was materialised before.
    # Off by default: on the synthetic markets they moved the AUC by -0.01..+0.005.
    use_regime_features: bool = False
    regime_states: tuple[Identifier_lower, ...] = ("calm", "volatile", "crisis")  # regime_<state> features, when used
    # LightGBM (binary objective; deterministic=True, force_row_wise=True)
    n_estimators: Annotated[int, Field(ge=1)] = 60
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    num_leaves: Annotated[int, Field(ge=2)] = 15
    min_child_samples: Annotated[int, Field(ge=1)] = 200
    reg_lambda: Annotated[float, Field(ge=0)] = 1.0
    max_bin: Annotated[int, Field(ge=2)] = 63
    num_threads: Annotated[int, Field(ge=1)] = 2  # fixed, like the seed, so that a rerun is bit-identical
    seed: Annotated[int, Field(ge=0)] = 11
    # The drivers' attribution (prometheus_lib.fragility.drivers): "path" (Saabas, a few us a row)
    # or "shap" (LightGBM's exact TreeSHAP, pred_contrib: 50-80 us a row)
    contributions: Literal["path", "shap"] = "path"

    @model_validator(mode="after")
    def _check(self) -> FragilityConfig:
        if not self.features or len(set(self.features)) != len(self.features):
            raise ValueError(f"fragility.features must be distinct and non-empty, was {list(self.features)}")
        if self.train_window_sessions <= self.horizon_sessions:
            raise ValueError("fragility.train_window_sessions must exceed horizon_sessions")
        return self


class AssessmentConfig(FrozenModel):
    """The assessment engine (``prometheus_lib.assessment``): alphas, LightGBM walk-forward, ensemble.

    The decision at session T trades at T's close (``trade_at: close``) or at T+1's close
    (``next_close``); the label is the log total return over the ``horizon_sessions`` sessions
    after the trade. Models are fitted at anchored cuts k (k = min_train_sessions + j *
    refit_every_sessions panel rows from the market's first priced session) on the sample dates t
    in ``[k - train_window_sessions, k)`` (every ``train_stride_sessions``-th) whose label ended
    at least ``embargo_sessions`` sessions before k; hyper-parameters come from purged k-fold CV
    inside that window; a model scores sessions k .. next cut - 1 only if its CV passed the gates.
    """

    horizon_sessions: Annotated[int, Field(ge=1, le=252)] = 21
    trade_at: Literal["close", "next_close"] = "close"
    # Feature groups (prometheus_lib.assessment.ml.features documents each feature and its as-of rule).
    feature_groups: tuple[Literal["momentum", "volatility", "liquidity", "alphas", "earnings", "market_state"], ...] = (
        "momentum", "volatility", "liquidity", "alphas", "earnings", "market_state")
    # Walk-forward
    refit_every_sessions: Annotated[int, Field(ge=1)] = 63
    min_train_sessions: Annotated[int, Field(ge=63)] = 252  # first cut at this panel row
    train_window_sessions: Annotated[int, Field(ge=63)] = 756
    train_stride_sessions: Annotated[int, Field(ge=1)] = 5  # one sample date in 5 (labels overlap)
    embargo_sessions: Annotated[int, Field(ge=0)] = 5
    cv_folds: Annotated[int, Field(ge=2, le=20)] = 4
    # LightGBM regression on the cross-sectional rank of the label (deterministic, fixed seed/threads).
    # The CV picks num_leaves and min_child_samples from these grids by mean OOS rank IC.
    num_leaves_grid: tuple[Annotated[int, Field(ge=2)], ...] = (7, 15)
    min_child_samples_grid: tuple[Annotated[int, Field(ge=1)], ...] = (500,)
    n_estimators: Annotated[int, Field(ge=1)] = 80
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.075
    feature_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    # Below 1, each tree sees this share of the training rows (LightGBM bagging, every iteration,
    # seeded). Off by default: on the synthetic market it moved the OOS Rank IC by +-0.002 and made
    # a fit no faster (LightGBM copies the bag).
    bagging_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    reg_lambda: Annotated[float, Field(ge=0)] = 1.0
    max_bin: Annotated[int, Field(ge=2)] = 63
    num_threads: Annotated[int, Field(ge=1)] = 2
    seed: Annotated[int, Field(ge=0)] = 13
    # Promotion gates on the CV folds' out-of-sample results of the chosen hyper-parameters.
    gate_quantiles: Annotated[int, Field(ge=2, le=20)] = 5  # top-minus-bottom quantile portfolio
    gate_min_oos_sharpe: float = 0.5
    gate_min_hit_rate: Annotated[float, Field(ge=0, le=1)] = 0.45
    gate_no_negative_fold: bool = True
    # Ensemble: confidence-weighted vote of the components (weights renormalised over those present).
    ensemble_weights: dict[Literal["ml", "rsi", "ema_cross", "macd"], Annotated[float, Field(ge=0)]] = {
        "ml": 0.5, "rsi": 0.2, "ema_cross": 0.2, "macd": 0.1}
    regime_filter: Literal["off", "scale", "block"] = "scale"  # longs x (1 - P(crisis)), or none in the crisis state
    crisis_state: Identifier_lower = "crisis"
    # Platt calibration of the ensemble score into P(forward return > 0), refitted at every cut on
    # the already out-of-sample scores of the last calibration_window_sessions whose labels ended.
    calibration_window_sessions: Annotated[int, Field(ge=21)] = 756
    calibration_min_rows: Annotated[int, Field(ge=10)] = 500
    # Signal filters
    min_adv_value: Annotated[float, Field(ge=0)] = 1_000_000.0  # mean close x volume over liquidity_window
    liquidity_window: Annotated[int, Field(ge=1)] = 21
    earnings_blackout_sessions: Annotated[int, Field(ge=0)] = 2  # +- sessions around a call (the next one projected)
    min_price: Annotated[float, Field(ge=0)] = 5.0
    # Alpha parameters (Lean's defaults)
    rsi_period: Annotated[int, Field(ge=2)] = 14
    ema_fast: Annotated[int, Field(ge=1)] = 12
    ema_slow: Annotated[int, Field(ge=2)] = 26
    macd_signal: Annotated[int, Field(ge=1)] = 9
    macd_threshold: Annotated[float, Field(gt=0)] = 0.01

    @model_validator(mode="after")
    def _check(self) -> AssessmentConfig:
        if not self.feature_groups or len(set(self.feature_groups)) != len(self.feature_groups):
            raise ValueError(f"assessment.feature_groups must be distinct and non-empty, was {list(self.feature_groups)}")
        if self.ema_fast >= self.ema_slow:
            raise ValueError(f"assessment.ema_fast ({self.ema_fast}) must be below ema_slow ({self.ema_slow})")
        if self.train_window_sessions <= self.horizon_sessions + self.embargo_sessions:
            raise ValueError("assessment.train_window_sessions must exceed horizon_sessions + embargo_sessions")
        if sum(self.ensemble_weights.values()) <= 0:
            raise ValueError(f"assessment.ensemble_weights must have a positive weight, was {self.ensemble_weights}")
        if not self.num_leaves_grid or not self.min_child_samples_grid:
            raise ValueError("assessment.num_leaves_grid and min_child_samples_grid must not be empty")
        return self


class EnginesConfig(FrozenModel):
    """Engine settings. Engines add their own ``<Engine>Config`` sections as they land."""

    data_quality: DataQualityConfig = DataQualityConfig()
    regime: RegimeConfig = RegimeConfig()
    stability: StabilityConfig = StabilityConfig()
    fragility: FragilityConfig = FragilityConfig()
    assessment: AssessmentConfig = AssessmentConfig()


class DuckDBConfig(FrozenModel):
    """The embedded warehouse file, relative to PROMETHEUS_HOME unless absolute."""

    path: str = "warehouse/prometheus.duckdb"
    threads: PositiveInt | None = None
    memory_limit: str | None = None


class PostgresConfig(FrozenModel):
    """PostgreSQL warehouse: the URL is read from the environment variable ``url_env``."""

    url_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] = "PROMETHEUS_WAREHOUSE_URL"


class WarehouseConfig(FrozenModel):
    """Which warehouse backend to use; PostgreSQL when its URL variable is set, else DuckDB."""

    backend: Literal["auto", "duckdb", "postgres"] = "auto"
    duckdb: DuckDBConfig = DuckDBConfig()
    postgres: PostgresConfig = PostgresConfig()


class PlatformConfig(FrozenModel):
    """Everything under ``configs/``."""

    markets: tuple[MarketConfig, ...]
    primary_market: Identifier
    strategies: tuple[StrategyConfig, ...]
    default_strategy: Identifier
    engines: EnginesConfig = EnginesConfig()
    warehouse: WarehouseConfig = WarehouseConfig()

    @model_validator(mode="after")
    def _cross_refs(self) -> PlatformConfig:
        ids = [m.market_id for m in self.markets]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate market_id in markets: {ids}")
        if self.primary_market not in ids:
            raise ValueError(f"primary_market {self.primary_market!r} is not a market; markets: {ids}")
        sids = [s.strategy_id for s in self.strategies]
        if len(set(sids)) != len(sids):
            raise ValueError(f"duplicate strategy_id in strategies: {sids}")
        if self.default_strategy not in sids:
            raise ValueError(f"default_strategy {self.default_strategy!r} is not a strategy; strategies: {sids}")
        for s in self.strategies:
            if s.market_id not in ids:
                raise ValueError(f"strategy {s.strategy_id} trades unknown market {s.market_id!r}; markets: {ids}")
        return self

    def market(self, market_id: str) -> MarketConfig:
        """Return the market called ``market_id``."""
        for m in self.markets:
            if m.market_id == market_id:
                return m
        raise KeyError(f"unknown market {market_id!r}; markets: {[m.market_id for m in self.markets]}")

    def strategy(self, strategy_id: str) -> StrategyConfig:
        """Return the strategy called ``strategy_id``."""
        for s in self.strategies:
            if s.strategy_id == strategy_id:
                return s
        raise KeyError(f"unknown strategy {strategy_id!r}; strategies: {[s.strategy_id for s in self.strategies]}")
