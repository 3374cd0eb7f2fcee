"""Lean's technical alpha models (RSI, EMA cross, MACD) as per-session signals over a panel.

QuantConnect Lean's ``RsiAlphaModel``, ``EmaCrossAlphaModel`` and ``MacdAlphaModel``
(``Algorithm.Framework/Alphas/*.py``) emit *insights*: a direction (up / down) that holds for
a period, emitted on an event (a state change, a cross). Our engine needs a value per
instrument per session, so each function here replays the model's state machine over the
panel (a loop over sessions, vectorised across instruments) and reports, per cell:

``value``       the indicator the model reads: RSI; ``ema_fast / ema_slow - 1``; MACD signal
                line / close.
``emitted``     an insight was emitted at this cell.
``direction``   the *active direction* (int8 in {-1, 0, 1}): the direction of the latest insight
                emitted at or before T if T lies within its period (the emission session counts
                as session 1, so an insight of period p is active on sessions e .. e + p - 1),
                else 0 (flat). Periods count panel sessions, gaps included (Lean's insight period
                is resolution x period, i.e. calendar sessions on a daily panel).
``confidence``  in [0, 1] (Lean leaves it unset; ours is below).
``magnitude``   Lean's magnitude where defined: none of these three models sets it, so all NaN.
``score``       ``direction * confidence``.

Cells whose ``value`` is NaN (the indicator's warm-up, a gap, after a delisting, a zero close
for MACD) have direction 0, NaN confidence and score, no emission, and do not move the state
machine; an insight's period still elapses over them.

The models, read from Lean's source
    RSI (``period`` = 14). ``get_state``: rsi > ``upper`` (70) -> TRIPPED_HIGH; rsi < ``lower``
    (30) -> TRIPPED_LOW; from TRIPPED_LOW, rsi > ``reset_lower`` (35) -> MIDDLE; from
    TRIPPED_HIGH, rsi < ``reset_upper`` (65) -> MIDDLE; otherwise the state is kept. A state
    change *into* TRIPPED_LOW emits up, into TRIPPED_HIGH emits down (leaving a tripped state
    emits nothing). Insight period ``period`` sessions. The state starts MIDDLE.
    EMA cross (``fast`` = 12, ``slow`` = 26, two independent TA-Lib EMAs). Lean keeps
    ``fast_is_over_slow = fast > slow`` (strict) from the previous update, initially False: if
    it was True and now slow > fast -> down; if it was False and now fast > slow -> up. Insight
    period ``fast`` sessions. Because the flag starts False, the first session where both EMAs
    exist emits up if fast > slow already (and nothing if fast < slow), as Lean does once its
    indicators are warmed up; after an exact tie (flag False) a later fast > slow emits up again.
    MACD (``fast``/``slow``/``signal`` = 12/26/9, TA-Lib's MACD). ``normalised = signal / close``;
    > ``threshold`` (0.01) -> up, < -``threshold`` -> down, else flat. A direction equal to the
    previous one emits nothing (the previous direction starts unset, so the first ready session
    emits when it is up or down). A change *to flat* emits nothing but cancels the model's
    outstanding insights (Lean's ``CancelInsights``): the active direction drops to 0 at that
    session. Lean skips a security whose price is 0; so do we. Insight period ``fast`` sessions.
    Note that once an insight expires the direction is 0 even if the signal still points the
    same way: the model only re-emits on a change of direction.

Differences from Lean's source (beyond the indicators being TA-Lib's, see ``indicators``)
    * Lean updates the RSI state and the EMA flag even before the indicators are ready (on
      their partial warm-up values), silently; here the state machines start at the first
      session with a value (state MIDDLE, flag False, MACD previous direction unset).
    * RSI of a column flat since its seed is 0 (TA-Lib's 0/0 convention) where Lean's RSI
      returns 100 for a zero average loss; such a column trips low (up) here, high in Lean.
    * Lean's insights live in calendar time (``resolution x period``); here in panel sessions.

Confidence (Lean leaves it unset). Each alpha has a signed strength ``s`` (positive = bullish):
    RSI       ``s = (50 - rsi) / 50``            (distance from neutral, 1 at RSI 0)
    EMA cross ``s = (ema_fast / ema_slow - 1) / confidence_scale``  (default scale 0.05)
    MACD      ``s = (signal / close) / confidence_scale``           (default scale 0.05)
and ``confidence = clip(direction * s, 0, 1)`` when the direction is not 0 (the signal's
strength in the insight's direction: a stronger signal gets a higher confidence, a signal that
has turned against the still-active insight gets 0), ``clip(|s|, 0, 1)`` when it is 0.

Every output at row T reads rows ``<= T`` only.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from prometheus_lib.assessment.alphas.indicators import as_panel, check_period, ema, macd, rsi
from prometheus_lib.errors import ConfigError

__all__ = [
    "ALPHAS",
    "AlphaSignals",
    "compute_alphas",
    "ema_cross_alpha",
    "macd_alpha",
    "rsi_alpha",
]

ALPHAS: tuple[str, ...] = ("rsi", "ema_cross", "macd")

_MIDDLE, _TRIPPED_LOW, _TRIPPED_HIGH = 0, 1, 2
_UNSET = 2  # MACD's previous direction before the first ready session (Lean's None)


@dataclass(frozen=True, eq=False)
class AlphaSignals:
    """One alpha's per-cell outputs, each array of the panel's shape (read-only).

    ``insight_period`` is the number of sessions an emitted insight stays active.
    """

    value: np.ndarray
    direction: np.ndarray
    confidence: np.ndarray
    magnitude: np.ndarray
    score: np.ndarray
    emitted: np.ndarray
    insight_period: int

    def __post_init__(self) -> None:
        for f in fields(self):
            item = getattr(self, f.name)
            if isinstance(item, np.ndarray):
                item.setflags(write=False)


# ------------------------------------------------------------------ shared steps
def _active_direction(event: np.ndarray, insight_period: int) -> np.ndarray:
    """The active direction from per-cell events.

    ``event`` holds the emitted direction (-1 / 1), 0 for a cancellation, and ``_UNSET`` where
    nothing happened. The latest event at or before T rules while T is within
    ``insight_period`` sessions of it (a cancellation rules as flat).
    """
    sessions = event.shape[0]
    row = np.arange(sessions)[:, None]
    happened = event != _UNSET
    last = np.maximum.accumulate(np.where(happened, row, -1), axis=0)
    last_direction = np.take_along_axis(np.where(happened, event, 0), np.maximum(last, 0), axis=0)
    live = (last >= 0) & (row - last < insight_period)
    return np.where(live, last_direction, 0).astype(np.int8)


def _signals(
    value: np.ndarray,
    strength: np.ndarray,
    event: np.ndarray,
    insight_period: int,
    one_d: bool,
) -> AlphaSignals:
    """Assemble an ``AlphaSignals`` from the indicator value, signed strength and events."""
    ok = np.isfinite(value)
    direction = np.where(ok, _active_direction(event, insight_period), 0).astype(np.int8)
    with np.errstate(invalid="ignore"):
        aligned = np.where(direction != 0, direction * strength, np.abs(strength))
        confidence = np.where(ok, np.clip(aligned, 0.0, 1.0), np.nan)
    score = np.where(ok, direction * confidence, np.nan)
    emitted = ok & (event != _UNSET) & (event != 0)
    value = np.where(ok, value, np.nan)
    magnitude = np.full(value.shape, np.nan)
    arrays = [value, direction, confidence, magnitude, score, emitted]
    if one_d:
        arrays = [a[:, 0] for a in arrays]
    return AlphaSignals(*arrays, insight_period=insight_period)


def _check_scale(scale: float) -> float:
    if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0):
        raise ConfigError(f"confidence_scale must be a finite number > 0, got {scale!r}")
    return float(scale)


# ------------------------------------------------------------------ alphas
def rsi_alpha(
    close: np.ndarray,
    period: int = 14,
    lower: float = 30,
    upper: float = 70,
    reset_lower: float = 35,
    reset_upper: float = 65,
) -> AlphaSignals:
    """Lean's ``RsiAlphaModel``: up on tripping below ``lower``, down on tripping above ``upper``."""
    period = check_period("period", period)
    if not (lower <= reset_lower and reset_upper <= upper and lower < upper):
        raise ConfigError(
            "the RSI bands need lower <= reset_lower and reset_upper <= upper and lower < upper, got "
            f"lower={lower}, reset_lower={reset_lower}, reset_upper={reset_upper}, upper={upper}"
        )
    panel, one_d = as_panel(close)
    value = rsi(panel, period)
    event = np.full(value.shape, _UNSET, dtype=np.int8)
    state = np.full(value.shape[1], _MIDDLE, dtype=np.int8)
    for t in range(value.shape[0]):
        v = value[t]
        ok = np.isfinite(v)
        new = state.copy()
        new[ok & (state == _TRIPPED_LOW) & (v > reset_lower)] = _MIDDLE
        new[ok & (state == _TRIPPED_HIGH) & (v < reset_upper)] = _MIDDLE
        new[ok & (v < lower)] = _TRIPPED_LOW
        new[ok & (v > upper)] = _TRIPPED_HIGH
        event[t, (new == _TRIPPED_LOW) & (state != _TRIPPED_LOW)] = 1
        event[t, (new == _TRIPPED_HIGH) & (state != _TRIPPED_HIGH)] = -1
        state = new
    strength = (50.0 - value) / 50.0
    return _signals(value, strength, event, period, one_d)


def ema_cross_alpha(
    close: np.ndarray, fast: int = 12, slow: int = 26, *, confidence_scale: float = 0.05
) -> AlphaSignals:
    """Lean's ``EmaCrossAlphaModel``: up when the fast EMA crosses above the slow one, down below."""
    fast = check_period("fast", fast)
    slow = check_period("slow", slow)
    if fast >= slow:
        raise ConfigError(f"the fast period must be shorter than the slow one, got fast={fast}, slow={slow}")
    scale = _check_scale(confidence_scale)
    panel, one_d = as_panel(close)
    fast_ema = ema(panel, fast)
    slow_ema = ema(panel, slow)
    value = fast_ema / slow_ema - 1.0
    event = np.full(value.shape, _UNSET, dtype=np.int8)
    fast_is_over_slow = np.zeros(value.shape[1], dtype=bool)
    for t in range(value.shape[0]):
        f, s = fast_ema[t], slow_ema[t]
        ok = np.isfinite(f) & np.isfinite(s)
        event[t, ok & fast_is_over_slow & (s > f)] = -1
        event[t, ok & ~fast_is_over_slow & (f > s)] = 1
        fast_is_over_slow = np.where(ok, f > s, fast_is_over_slow)
    return _signals(value, value / scale, event, fast, one_d)


def macd_alpha(
    close: np.ndarray,
    fast: int = 12,
    slow: int = 26,
    signal: int = 9,
    threshold: float = 0.01,
    *,
    confidence_scale: float = 0.05,
) -> AlphaSignals:
    """Lean's ``MacdAlphaModel``: the MACD signal line over the price against a bounce threshold."""
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold) and threshold >= 0):
        raise ConfigError(f"threshold must be a finite number >= 0, got {threshold!r}")
    scale = _check_scale(confidence_scale)
    panel, one_d = as_panel(close)
    _, signal_line, _ = macd(panel, fast, slow, signal)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(panel != 0, signal_line / panel, np.nan)
    event = np.full(value.shape, _UNSET, dtype=np.int8)
    previous = np.full(value.shape[1], _UNSET, dtype=np.int8)
    for t in range(value.shape[0]):
        v = value[t]
        ok = np.isfinite(v)
        direction = np.where(v > threshold, 1, np.where(v < -threshold, -1, 0)).astype(np.int8)
        changed = ok & (direction != previous)
        event[t, changed] = direction[changed]  # 0 = a change to flat: Lean cancels its insights
        previous = np.where(changed, direction, previous)
    return _signals(value, value / scale, event, int(fast), one_d)


_FUNCTIONS = {"rsi": rsi_alpha, "ema_cross": ema_cross_alpha, "macd": macd_alpha}


def compute_alphas(close: np.ndarray, params: dict[str, dict[str, Any]] | None = None) -> dict[str, AlphaSignals]:
    """Every alpha of ``ALPHAS`` on ``close``; ``params`` maps an alpha's name to its keyword arguments.

    ``compute_alphas(close, {"rsi": {"period": 10}})`` runs the RSI alpha with period 10 and the
    others with their defaults.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(ALPHAS))
    if unknown:
        raise ConfigError(f"unknown alpha(s) {unknown} in params; the alphas are {list(ALPHAS)}")
    out: dict[str, AlphaSignals] = {}
    for name in ALPHAS:
        kwargs = params.get(name) or {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f"params[{name!r}] must be a dict of keyword arguments, got {kwargs!r}")
        function = _FUNCTIONS[name]
        try:
            inspect.signature(function).bind(close, **kwargs)
        except TypeError as e:
            raise ConfigError(f"bad parameters for alpha {name!r}: {e}") from e
        out[name] = function(close, **kwargs)
    return out
