"""The baseline strategy: panel scores -> top-K liquid universe -> capped inverse-volatility weights.

For each session T, reading only through a ``TimeMachine`` set to T:

* **Scores** (assessment): ``momentum_weight * z(MOM) - low_vol_weight * z(LOWVOL)``, where
  ``z(MOM)`` and ``z(LOWVOL)`` are the cross-sectional z-scores of 12-1 momentum and 63-session
  volatility at T from ``instrument_factors_daily.exposure_z``.
* **Universe**: candidates need a close at T, ``min_history_sessions`` closes up to T, a 63-session
  volatility, a score, and an average daily traded value (close x volume over
  ``liquidity_window`` sessions, at least half of them present) >= ``min_adv_value``. The top
  ``universe_size`` by score (ties by instrument id) are in.
* **Weights** (portfolio): inverse ``max(vol_63d, volatility_floor)``, normalised to 1, then
  capped at ``max_position_weight`` with the excess spread over uncapped names until none is
  over the cap (if the cap binds for all, the rest stays in cash).
* **Risk report**: on the target weights, with the last 252 sessions of simple returns (missing
  returns count as 0): annualised volatility, historical VaR/ES at 95 % and 99 %, gross and net
  exposure, sector and factor (sum of weight x rolling beta) exposures, and two stress figures.
* **Decision outcomes**: at T, the decision taken ``outcome_horizon_sessions`` earlier is scored
  with the realised return of its target weights from that close to T's close (an instrument
  without both prices counts as 0), beside the market factor's compounded return.

The engine keeps no state between sessions except the target weights it needs for outcomes,
which a caller may seed from storage (``prior_targets``) when a run starts mid-history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from prometheus_lib.analytics.metrics import historical_var_es
from prometheus_lib.config.models import StrategyConfig
from prometheus_lib.execution.market import InstrumentIndex
from prometheus_lib.execution.time_machine import TimeMachine

ENGINE_NAME = "baseline_strategy"
RISK_WINDOW_SESSIONS = 252
STYLE_FACTORS = ("MKT", "SIZE", "MOM", "LOWVOL")


@dataclass(frozen=True, slots=True)
class StrategyDecision:
    """What the strategy decided at one session."""

    session_date: date
    decision_id: str
    candidates: np.ndarray  # bool per instrument: passed every filter
    scores: np.ndarray  # per instrument, NaN when not scoreable
    components: dict[str, np.ndarray]  # z_mom, z_lowvol, adv, vol_63d
    reason_mask: np.ndarray  # int per instrument: bit k set when reason_labels[k] excludes it
    reason_labels: tuple[str, ...]
    included: np.ndarray  # bool per instrument
    weights: np.ndarray  # target weight per instrument (0 when out)
    risk: dict[str, object]

    @property
    def reasons(self) -> list[list[str]]:
        """Why each instrument is out of the universe (empty when in)."""
        return [reasons_of(int(m), self.reason_labels) for m in self.reason_mask]


def reasons_of(mask: int, labels: tuple[str, ...]) -> list[str]:
    """The reason texts whose bits are set in ``mask``."""
    return [label for k, label in enumerate(labels) if mask >> k & 1]


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """The realised result of an earlier decision."""

    decision_id: str
    decision_date: date
    outcome_date: date
    horizon_sessions: int
    realized_return: float
    benchmark_return: float
    holdings: int


def lookback_sessions(config: StrategyConfig) -> int:
    """Sessions of history before its first decision that the baseline engine of ``config`` reads."""
    b = config.baseline
    return max(b.liquidity_window, b.min_history_sessions, RISK_WINDOW_SESSIONS, b.outcome_horizon_sessions) + 1


def cap_weights(raw: np.ndarray, cap: float) -> np.ndarray:
    """Normalise non-negative ``raw`` to sum 1 and cap each weight at ``cap`` (water-filling).

    Excess above the cap is spread over the uncapped names in proportion to their weight, until
    no weight is above ``cap``. When ``len(raw) * cap < 1`` every name ends at ``cap`` and the
    weights sum to less than 1.
    """
    w = np.asarray(raw, dtype=float)
    if w.size == 0 or w.sum() <= 0:
        return np.zeros_like(w)
    w = w / w.sum()
    capped = np.zeros(w.size, dtype=bool)
    for _ in range(w.size + 1):
        over = (w > cap + 1e-15) & ~capped
        if not over.any():
            break
        capped |= over
        w[capped] = cap
        free = ~capped
        budget = 1.0 - cap * capped.sum()
        if not free.any() or budget <= 0:
            break
        w[free] = w[free] / w[free].sum() * budget
    return w


@dataclass
class BaselineStrategy:
    """The baseline engine over a fixed instrument index; see the module docstring.

    Parameters
    ----------
    config
        The strategy's config (its ``baseline`` section, ``universe_size``,
        ``max_position_weight``).
    index
        The instruments the strategy may trade, in a fixed order.
    sectors
        Sector per instrument id (missing: "UNKNOWN").
    run_id
        The run the decisions belong to (part of every decision id).
    """

    config: StrategyConfig
    index: InstrumentIndex
    sectors: Mapping[str, str | None]
    run_id: str
    prior_targets: dict[date, tuple[str, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sector_of = [self.sectors.get(i) or "UNKNOWN" for i in self.index.ids]
        self._sector_names = sorted(set(sector_of))
        code = {name: n for n, name in enumerate(self._sector_names)}
        self._sector_code = np.array([code[s] for s in sector_of], dtype=np.int64)
        self._benchmark = InstrumentIndex.of([self.config.benchmark_factor])
        self._targets: dict[date, tuple[str, np.ndarray]] = dict(self.prior_targets)

    @property
    def lookback_sessions(self) -> int:
        """Sessions of history before the first decision the engine reads."""
        return lookback_sessions(self.config)

    @property
    def config_hash(self) -> str:
        """Hash of the strategy config recorded on every decision."""
        return self.config.config_hash()

    def decision_id(self, session: date) -> str:
        """Return the id of the decision taken at ``session``."""
        return f"{self.run_id}:{self.config.strategy_id}:{session.isoformat()}"

    # ------------------------------------------------------------ one session

    def decide(self, tm: TimeMachine) -> StrategyDecision:
        """Decide scores, universe, weights and risk at ``tm.current``."""
        b = self.config.baseline
        idx = self.index
        session = tm.current
        close_w = tm.matrix("prices_daily", "close", idx, lookback_sessions=max(b.min_history_sessions, b.liquidity_window))
        volume_w = tm.matrix("prices_daily", "volume", idx, lookback_sessions=b.liquidity_window)
        close_now = close_w[-1]
        history = np.isfinite(close_w[-b.min_history_sessions:]).sum(axis=0)
        liq_close = close_w[-b.liquidity_window:]
        traded = liq_close[-volume_w.shape[0]:] * volume_w
        n_traded = np.isfinite(traded).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            adv = np.where(n_traded * 2 >= b.liquidity_window, np.nansum(traded, axis=0) / np.maximum(n_traded, 1), np.nan)
        z_mom = tm.matrix("instrument_factors_daily", "exposure_z", idx, filter_column="factor_id", filter_value="MOM")[-1]
        z_vol = tm.matrix("instrument_factors_daily", "exposure_z", idx, filter_column="factor_id", filter_value="LOWVOL")[-1]
        vol63 = tm.matrix("volatility_daily", "vol_63d", idx)[-1]
        score = b.momentum_weight * z_mom - b.low_vol_weight * z_vol
        if b.momentum_weight == 0:
            score = -b.low_vol_weight * z_vol
        elif b.low_vol_weight == 0:
            score = b.momentum_weight * z_mom
        if b.score_source == "assessment":
            # The assessment's ensemble score at T (instrument_scores of run assessment/<strategy>):
            # absent for a filtered or unscored instrument, which then has "no score".
            score = tm.matrix("instrument_scores", "score", idx)[-1] if tm.has("instrument_scores") \
                else np.full(len(idx), np.nan)

        checks = (
            (np.isfinite(close_now) & (close_now > 0), "no close at the session"),
            (history >= b.min_history_sessions if close_w.shape[0] >= b.min_history_sessions else np.zeros(len(idx), bool),
             f"fewer than {b.min_history_sessions} sessions of history"),
            (np.isfinite(vol63), "no 63-session volatility"),
            (np.isfinite(score), "no score"),
            (np.isfinite(adv) & (adv >= b.min_adv_value), f"average daily value below {b.min_adv_value:,.0f}"),
        )
        candidates = np.ones(len(idx), dtype=bool)
        mask = np.zeros(len(idx), dtype=np.int64)
        for bit, (ok, _) in enumerate(checks):
            candidates &= ok
            mask |= (~ok).astype(np.int64) << bit
        labels = (*(why for _, why in checks), f"ranked below the top {self.config.universe_size}")

        order = np.lexsort((np.arange(len(idx)), -np.where(candidates, score, -np.inf)))
        chosen = [k for k in order[: self.config.universe_size] if candidates[k]]
        included = np.zeros(len(idx), dtype=bool)
        included[chosen] = True
        mask |= (candidates & ~included).astype(np.int64) << (len(labels) - 1)

        weights = np.zeros(len(idx))
        if chosen:
            inv = 1.0 / np.maximum(vol63[chosen], b.volatility_floor)
            weights[chosen] = cap_weights(inv, self.config.max_position_weight)
        decision_id = self.decision_id(session)
        self._targets[session] = (decision_id, weights)
        risk = self._risk(tm, weights)
        return StrategyDecision(
            session_date=session,
            decision_id=decision_id,
            candidates=candidates,
            scores=score,
            components={"z_mom": z_mom, "z_lowvol": z_vol, "adv": adv, "vol_63d": vol63},
            reason_mask=mask,
            reason_labels=labels,
            included=included,
            weights=weights,
            risk=risk,
        )

    def _risk(self, tm: TimeMachine, weights: np.ndarray) -> dict[str, object]:
        held = np.flatnonzero(weights != 0)
        rets = tm.matrix("returns_daily", "return_simple", self.index, lookback_sessions=RISK_WINDOW_SESSIONS)
        port = _zero_missing(rets[:, held]) @ weights[held] if held.size else np.zeros(rets.shape[0])
        port = port[np.isfinite(port)]
        vol = float(np.std(port, ddof=1) * math.sqrt(252)) if port.size >= 2 else math.nan
        var95, es95 = historical_var_es(port, 0.95)
        var99, es99 = historical_var_es(port, 0.99)
        by_sector = np.bincount(self._sector_code, weights=weights, minlength=len(self._sector_names))
        sectors = {s: float(w) for s, w in zip(self._sector_names, by_sector.tolist()) if w}
        factors = {}
        for f in STYLE_FACTORS:
            beta = tm.matrix("instrument_factors_daily", "beta", self.index, filter_column="factor_id", filter_value=f)[-1]
            known = held[np.isfinite(beta[held])]
            factors[f] = float(weights[known] @ beta[known]) if known.size else None
        five_day = np.convolve(port, np.ones(5), mode="valid") if port.size >= 5 else np.array([])
        mkt_beta = factors.get("MKT")
        scenarios = {
            "worst_day_in_window": float(port.min()) if port.size else None,
            "worst_5_days_in_window": float(five_day.min()) if five_day.size else None,
            "market_down_10pct": (-0.10 * mkt_beta) if mkt_beta is not None else None,
        }
        return {
            "volatility": vol,
            "var_95": var95,
            "es_95": es95,
            "var_99": var99,
            "es_99": es99,
            "gross_exposure": float(np.abs(weights).sum()),
            "net_exposure": float(weights.sum()),
            "holdings": int(held.size),
            "window_sessions": int(port.size),
            "sectors": sectors,
            "factors": factors,
            "scenarios": scenarios,
        }

    def outcomes(self, tm: TimeMachine) -> list[DecisionOutcome]:
        """Score the decision taken ``outcome_horizon_sessions`` before ``tm.current``, if known."""
        h = self.config.baseline.outcome_horizon_sessions
        k = tm.current_index
        if k < h:
            return []
        then = tm.sessions[k - h]
        earlier = self._targets.get(then)
        if earlier is None:
            return []
        decision_id, weights = earlier
        close = tm.matrix("prices_daily", "close", self.index, lookback_sessions=h + 1)
        if close.shape[0] < h + 1:
            return []
        with np.errstate(invalid="ignore", divide="ignore"):
            r = close[-1] / close[0] - 1.0
        held = np.flatnonzero(weights != 0)
        realized = float(_zero_missing(r[held]) @ weights[held]) if held.size else 0.0
        mkt_r = tm.matrix("factors_daily", "factor_return", self._benchmark, lookback_sessions=h,
                          instrument_column="factor_id")[:, 0]
        # a session without the factor's return (absent or NaN) leaves the benchmark unknown
        bench = float(np.prod(1.0 + mkt_r) - 1.0) if mkt_r.size == h and np.isfinite(mkt_r).all() else math.nan
        for old in [d for d in self._targets if d < then]:
            del self._targets[old]
        return [DecisionOutcome(decision_id, then, tm.current, h, realized, bench, int(held.size))]


def _zero_missing(x: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(x)`` (missing -> 0), without its cost when every value is finite."""
    return x if np.isfinite(x).all() else np.nan_to_num(x)


def risk_json(risk: Mapping[str, object]) -> tuple[str, str, str, str]:
    """Split a risk dict into the JSON columns of ``portfolio_risk_reports``."""
    core = {k: v for k, v in risk.items() if k not in ("sectors", "factors", "scenarios")}
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in core.items()}
    return (
        json.dumps(clean, sort_keys=True),
        json.dumps(risk["scenarios"], sort_keys=True),
        json.dumps(risk["sectors"], sort_keys=True),
        json.dumps(risk["factors"], sort_keys=True),
    )
