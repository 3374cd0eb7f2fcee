"""The assessment engine: per strategy, per instrument per session, a score a quant would trust.

For the sessions of ``[start, end]`` of one market, reading data up to each session only:

1. **Features** (``ml.features``): the configured groups, cross-sectionally ranked, checked
   as-of on every run (``check_as_of`` perturbs every input after two probe sessions and fails
   if a feature at or before them moves: the leakage canary).
2. **Walk-forward models** (``ml.walk_forward``): LightGBM fitted at anchored cuts, each on labels
   that ended before it (purge + embargo), hyper-parameters by purged k-fold CV; promoted only
   when its CV passes the gates, else the previous promoted model keeps scoring (or, before any,
   the alphas alone). Models come from the ``ModelStore`` when already trained.
3. **Alphas** (``alphas``): Lean's RSI, EMA cross and MACD insights.
4. **Ensemble** (``ensemble``): the confidence-weighted vote, the regime filter, and the Platt
   calibration refitted at every cut on already out-of-sample scores.
5. **Filters** (``filters``): liquidity, earnings blackout, price floor, each with its reason.

Outputs: ``signals`` (every scored instrument, its components, ensemble direction, confidence,
calibrated probability, regime and, when filtered, why) and ``instrument_scores`` (the tradable
ones: score, expected return over the horizon, confidence), both under ``strategy_id``; the
model records with their CV folds (``walk_forward_results``, ``models``); one decision per session;
and the evaluation frame (scores beside realised forward returns) the report is built from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from prometheus_lib.assessment.alphas import compute_alphas
from prometheus_lib.assessment.ensemble import Calibration, apply_regime_filter, fit_calibration, ml_component, vote
from prometheus_lib.assessment.filters import FILTER_NAMES, reason_lists, signal_filters
from prometheus_lib.assessment.ml.cv import walk_forward_cuts
from prometheus_lib.assessment.ml.features import (
    AssessmentInputs, ExtraFeature, alpha_params, build_features, call_arrays, check_as_of)
from prometheus_lib.assessment.ml.labels import forward_returns, label_shift
from prometheus_lib.assessment.ml.walk_forward import (
    MemoryModelStore, ModelRecord, ModelStore, fit_at, model_id, training_hash)
from prometheus_lib.config.models import AssessmentConfig
from prometheus_lib.storage.catalog import get_table

__all__ = ["COMPONENTS", "AssessmentEngine", "AssessmentResult", "run_id_of"]

COMPONENTS = ("ml", "rsi", "ema_cross", "macd")
_TOP = 5


def run_id_of(strategy_id: str) -> str:
    """The ``instrument_scores`` / ``engine_decisions`` run id of a strategy's assessment."""
    return f"assessment/{strategy_id}"


@dataclass(frozen=True)
class AssessmentResult:
    """One run's output (see the module docstring)."""

    signals: pl.DataFrame
    scores: pl.DataFrame
    records: list[ModelRecord]
    promotion: dict[str, tuple[bool, dict, list[str]]]
    trained: list[str]
    evaluation: pl.DataFrame
    sessions: list[date]
    decisions: list[dict]
    inputs: list[dict]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def promoted_model(self) -> str | None:
        """The model scoring the last session (None: the alphas alone)."""
        return self.decisions[-1].get("model_id") if self.decisions else None


def _truncate(inputs: AssessmentInputs, end: date) -> AssessmentInputs:
    p = inputs.panel
    k = int(np.searchsorted(p.sessions, np.datetime64(end, "D"), side="right"))
    if k == p.n_sessions:
        return inputs
    keep = np.flatnonzero(np.isfinite(p.close[:k]).any(axis=0))
    panel = p.truncated(end)
    regime = inputs.regime_probabilities[:k] if inputs.regime_probabilities is not None else None
    stability = inputs.stability[:k][:, keep] if inputs.stability is not None else None
    return AssessmentInputs(panel, inputs.calls, regime, inputs.regime_states, stability, inputs.fingerprint)


class AssessmentEngine:
    """Alphas + walk-forward LightGBM + calibrated ensemble for one strategy on one market."""

    name = "assessment"

    def __init__(self, config: AssessmentConfig, strategy_id: str, store: ModelStore | None = None,
                 extra_features: Mapping[str, ExtraFeature] | None = None) -> None:
        self.config = config
        self.strategy_id = strategy_id
        self.store = store if store is not None else MemoryModelStore()
        self.extra = dict(extra_features or {})
        self.config_hash = config.config_hash()

    # ------------------------------------------------------------------ walk-forward
    def _models(self, cube, labels, names, dates, last: int, context: str) -> tuple[list[tuple[int, ModelRecord]], list[str]]:
        c = self.config
        thash = training_hash(c, names, context)
        out, trained = [], []
        for cut in walk_forward_cuts(0, last, c.refit_every_sessions, c.min_train_sessions).tolist():
            mid = model_id(self.strategy_id, thash, dates[cut])
            record = self.store.get(mid)
            if record is None:
                record = fit_at(cut, cube, labels, names, dates, c, label_shift(c), mid, thash)
                if record is None:
                    continue
                self.store.put(record)
                trained.append(mid)
            out.append((cut, record))
        return out, trained

    def run(self, inputs: AssessmentInputs, start: date, end: date) -> AssessmentResult:
        """Score the sessions of ``[start, end]`` (see the module docstring)."""
        import time

        c = self.config
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        inputs = _truncate(inputs, end)
        panel = inputs.panel
        dates = panel.session_dates()
        wanted = panel.rows_between(start, end)
        n = panel.n_sessions
        features = build_features(inputs, c, self.extra)
        timings["features"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        check_as_of(inputs, c, features, probe_rows=sorted({n // 2, n - 2}), extra=self.extra, seed=c.seed)
        timings["as_of_check"] = time.perf_counter() - t1
        if wanted.size == 0:
            return self._empty(timings)
        last = int(wanted[-1])
        shift = label_shift(c)
        labels = forward_returns(panel, c.horizon_sessions, shift)

        t1 = time.perf_counter()
        context = f"{panel.market_id}|{inputs.fingerprint}"
        fitted, trained = self._models(features.values, labels, list(features.names), dates, last, context)
        timings["training"] = time.perf_counter() - t1
        promotion = {r.model_id: r.gates(c) for _, r in fitted}

        # Which model scores each row: the latest promoted one cut at or before it.
        t1 = time.perf_counter()
        listed = panel.listed
        prediction = np.full(panel.close.shape, np.nan)
        active: list[ModelRecord | None] = [None] * n
        latest: list[ModelRecord | None] = [None] * n
        current: ModelRecord | None = None
        bounds = [cut for cut, _ in fitted] + [n]
        for (cut, record), stop in zip(fitted, bounds[1:], strict=True):
            if promotion[record.model_id][0]:
                current = record
            for r in range(cut, stop):
                active[r], latest[r] = current, record
            if current is not None and stop > cut:
                block = listed[cut:stop]
                ri, ci = np.nonzero(block)
                if ri.size:
                    prediction[cut + ri, ci] = current.predict(features.values[cut + ri, ci])
        timings["scoring"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        alphas = compute_alphas(panel.close, alpha_params(c))
        comps = {"ml": ml_component(np.where(listed, prediction, np.nan)),
                 **{name: np.where(listed, alphas[name].score, np.nan) for name in ("rsi", "ema_cross", "macd")}}
        raw_vote = vote(comps, c.ensemble_weights)
        p_crisis, crisis_top, regime_label = self._regime(inputs, n)
        ensemble = apply_regime_filter(raw_vote, p_crisis, crisis_top, c.regime_filter)

        # Calibration at each cut, on already out-of-sample scores whose labels ended before it.
        calib: list[Calibration | None] = [None] * n
        h = c.horizon_sessions + shift
        cal_cuts = [cut for cut, _ in fitted]
        for cut, stop in zip(cal_cuts, [*cal_cuts[1:], n][:len(cal_cuts)], strict=True):
            lo, hi = max(0, cut - c.calibration_window_sessions), cut - h - 1
            if hi < lo:
                continue
            rows = np.arange(lo, hi + 1)
            rows = rows[(rows % c.train_stride_sessions) == 0]
            fit = fit_calibration(ensemble[rows].ravel(), labels[rows].ravel(), c.calibration_min_rows)
            for r in range(cut, stop):
                calib[r] = fit
        probability = np.full(panel.close.shape, np.nan)
        expected = np.full(panel.close.shape, np.nan)
        for r in range(n):
            if calib[r] is not None:
                probability[r] = calib[r].probability(ensemble[r])
                expected[r] = calib[r].expected_return(ensemble[r])
        last_call, _ = call_arrays(panel, inputs.calls)
        fmask, fvalues = signal_filters(panel, last_call, c)
        timings["ensemble"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        result = self._frames(panel, dates, wanted, comps, ensemble, probability, expected, fmask, fvalues, labels,
                              regime_label, active, latest, promotion, calib, fitted, trained, features.names)
        timings["frames"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - t0
        return AssessmentResult(*result, timings=timings)

    def _regime(self, inputs: AssessmentInputs, n: int) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        probs = inputs.regime_probabilities
        if probs is None or self.config.crisis_state not in inputs.regime_states:
            return np.full(n, np.nan), np.zeros(n, dtype=bool), [None] * n
        k = inputs.regime_states.index(self.config.crisis_state)
        finite = np.isfinite(probs).all(axis=1)
        top = np.argmax(np.where(np.isfinite(probs), probs, -1.0), axis=1)
        labels = [inputs.regime_states[int(t)] if f else None for t, f in zip(top, finite, strict=True)]
        return np.where(finite, probs[:, k], np.nan), finite & (top == k), labels

    def _empty(self, timings) -> AssessmentResult:
        return AssessmentResult(pl.DataFrame(schema=get_table("signals").polars_schema),
                                pl.DataFrame(schema=get_table("instrument_scores").polars_schema),
                                [], {}, [], pl.DataFrame(), [], [], [], timings)

    # ------------------------------------------------------------------ output frames
    def _frames(self, panel, dates, wanted, comps, ensemble, probability, expected, fmask, fvalues, labels,
                regime_label, active, latest, promotion, calib, fitted, trained, feature_names):
        c = self.config
        scored = panel.listed & np.isfinite(ensemble)
        sel = np.zeros_like(scored)
        sel[wanted] = scored[wanted]
        ri, ci = np.nonzero(sel)
        sessions = [dates[r] for r in ri.tolist()]
        ids = [panel.instrument_ids[j] for j in ci.tolist()]
        score = ensemble[ri, ci]
        direction = np.where(score > 0, "up", np.where(score < 0, "down", "flat"))
        prob = probability[ri, ci]
        bits = fmask[ri, ci]
        tradable = bits == 0
        reasons = reason_lists(bits, fvalues["adv"][ri, ci], panel.close[ri, ci], fvalues["since_call"][ri, ci],
                               fvalues["until_next_call"][ri, ci], c)
        regime = [regime_label[r] for r in ri.tolist()]
        model_of = [active[r].model_id if active[r] is not None else None for r in ri.tolist()]

        def num(a):
            return pl.Series(a, dtype=pl.Float64).fill_nan(None)

        comp = pl.DataFrame({
            **{name: num(comps[name][ri, ci]) for name in COMPONENTS},
            "ensemble": num(score), "probability": num(prob), "expected_return": num(expected[ri, ci]),
            "model_id": pl.Series(model_of, dtype=pl.String), "regime": pl.Series(regime, dtype=pl.String),
            "tradable": pl.Series(tradable, dtype=pl.Boolean),
            "filters": reasons,
        })
        components_json = comp.select(pl.struct(sorted(comp.columns)).struct.json_encode())[:, 0]
        keys = [f"{self.strategy_id}|{i}|{s.isoformat()}|{self.config_hash}" for i, s in zip(ids, sessions, strict=True)]
        signals = pl.DataFrame({
            "strategy_id": [self.strategy_id] * ri.size, "instrument_id": ids, "session_date": sessions,
            "direction": direction.tolist(), "confidence": num(np.abs(score)), "signal_score": num(score),
            "components_json": components_json, "regime_label": pl.Series(regime, dtype=pl.String),
            "idempotency_key": [hashlib.sha256(k.encode()).hexdigest()[:32] for k in keys],
        }, schema=get_table("signals").polars_schema)
        conf = np.where(np.isfinite(prob), np.where(score >= 0, prob, 1.0 - prob), np.abs(score))
        scores = pl.DataFrame({
            "strategy_id": [self.strategy_id] * ri.size, "instrument_id": ids, "session_date": sessions,
            "horizon_sessions": [c.horizon_sessions] * ri.size, "market_id": [panel.market_id] * ri.size,
            "expected_return": num(expected[ri, ci]), "score": num(score), "confidence": num(conf),
            "signal_label": direction.tolist(), "components_json": components_json,
            "config_hash": [self.config_hash] * ri.size, "run_id": [run_id_of(self.strategy_id)] * ri.size,
        }, schema=get_table("instrument_scores").polars_schema).filter(pl.Series(tradable))
        # The evaluation covers the whole out-of-sample history (every scored row from the first
        # cut to the range's end, whatever range was asked): the report's IC needs many sessions.
        first_cut_row = fitted[0][0] if fitted else int(wanted[-1]) + 1
        ev = np.zeros_like(scored)
        ev[first_cut_row:int(wanted[-1]) + 1] = scored[first_cut_row:int(wanted[-1]) + 1]
        ei, ej = np.nonzero(ev)
        evaluation = pl.DataFrame({
            "session_date": pl.Series([dates[r] for r in ei.tolist()], dtype=pl.Date),
            "instrument_id": pl.Series([panel.instrument_ids[j] for j in ej.tolist()], dtype=pl.String),
            "forward_return": num(labels[ei, ej]),
            **{name: num(comps[name][ei, ej]) for name in COMPONENTS},
            "ensemble": num(ensemble[ei, ej]), "probability": num(probability[ei, ej]),
            "regime": pl.Series([regime_label[r] for r in ei.tolist()], dtype=pl.String),
            "tradable": pl.Series(fmask[ei, ej] == 0, dtype=pl.Boolean),
        })

        # One decision per session with output.
        out_rows = sorted(set(ri.tolist()))
        decisions, inputs_json = [], []
        # ri is sorted (np.nonzero walks rows in order): each session's cells are one slice.
        lo = np.searchsorted(ri, out_rows, side="left")
        hi = np.searchsorted(ri, out_rows, side="right")
        row_of = {r: np.arange(a, b) for r, a, b in zip(out_rows, lo.tolist(), hi.tolist(), strict=True)}
        first_cut = fitted[0][0] if fitted else None
        for r in out_rows:
            idx = row_of[r]
            t_ok = idx[tradable[idx]]
            top = t_ok[np.argsort(-score[t_ok], kind="stable")[:_TOP]]
            lat = latest[r]
            counts = {name: int(((bits[idx] >> k) & 1).sum()) for k, name in enumerate(FILTER_NAMES)}
            decision = {
                "rows": int(idx.size), "tradable": int(t_ok.size), "filtered": counts,
                "model_id": active[r].model_id if active[r] is not None else None,
                "scoring": "ensemble" if active[r] is not None else "alphas only (no promoted model yet)",
                "latest_model": lat.model_id if lat is not None else None,
                "latest_promoted": promotion[lat.model_id][0] if lat is not None else None,
                "latest_gate_reasons": promotion[lat.model_id][2] if lat is not None else [],
                "calibration": calib[r].as_dict() if calib[r] is not None else None,
                "regime": regime_label[r],
                "top": [{"instrument_id": ids[k], "score": float(score[k]),
                         "probability": float(prob[k]) if np.isfinite(prob[k]) else None} for k in top.tolist()],
            }
            if lat is not None and active[r] is not None and lat is not active[r]:
                decision["kept_previous_model_because"] = promotion[lat.model_id][2]
            decisions.append(decision)
            inputs_json.append({"panel_rows": int(r + 1), "instruments_listed": int(panel.listed[r].sum()),
                                "features": list(feature_names), "first_cut": dates[first_cut].isoformat()
                                if first_cut is not None else None})
        records = [rec for _, rec in fitted]
        return (signals, scores, records, promotion, trained, evaluation, [dates[r] for r in out_rows], decisions,
                inputs_json)
