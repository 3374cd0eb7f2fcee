"""Walk-forward LightGBM: purged-CV model selection at each cut, promotion gates, reusable models.

At each anchored cut k (``cv.walk_forward_cuts``: panel row ``min_train_sessions + j *
refit_every_sessions``), ``fit_at`` takes the sample dates ``cv.training_dates`` allows (labels
ended at least ``embargo_sessions`` before k, inside ``train_window_sessions``, one date in
``train_stride_sessions``) and every instrument with a label there, and:

1. runs purged k-fold CV (``cv.purged_kfold``, by date, purge = the label horizon, plus the
   embargo) for each hyper-parameter set of the grid (``num_leaves_grid`` x
   ``min_child_samples_grid``); per fold it records the in-sample (every 4th training date) and out-of-sample Rank IC, and
   the OOS top-minus-bottom quantile portfolio (``gate_quantiles``): its annualised Sharpe
   (``mean / std x sqrt(252 / h)`` over the fold's test dates) and hit rate (share of test
   dates with a positive spread);
2. keeps the set with the best mean OOS Rank IC (ties: the first in grid order);
3. refits it on every training row: the model the cut's record carries.

The target is the label's cross-sectional rank (L2 regression); LightGBM runs deterministic
(``deterministic``, ``force_row_wise``, fixed seed and threads), so the same data and config
give the same model, bit for bit.

**Promotion** (``ModelRecord.gates``): the pooled OOS Sharpe of the chosen set's folds >=
``gate_min_oos_sharpe``, its pooled hit rate >= ``gate_min_hit_rate`` and, when
``gate_no_negative_fold``, no fold with a negative OOS Sharpe. The gates are read at use, from
the stored fold metrics, so changing a gate re-decides promotion without retraining.

**Reuse**: a model is identified by the training hash (the config fields that change training),
the strategy and the cut session (``model_id``); a ``ModelStore`` that already holds it returns
it instead of training again (the asset's store is the ``models`` table and its artefacts).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import cached_property
from typing import Protocol

import lightgbm as lgb
import numpy as np

from prometheus_lib.assessment.ml.cv import purged_kfold, training_dates
from prometheus_lib.config.models import AssessmentConfig

__all__ = ["TRAINING_FIELDS", "MemoryModelStore", "ModelRecord", "ModelStore", "fit_at", "model_id", "per_date_metrics",
           "training_hash"]

# The config fields a trained model depends on (the ensemble, filters, calibration and gates do not).
TRAINING_FIELDS = (
    "horizon_sessions", "trade_at", "feature_groups", "refit_every_sessions", "min_train_sessions",
    "train_window_sessions", "train_stride_sessions", "embargo_sessions", "cv_folds", "num_leaves_grid",
    "min_child_samples_grid", "n_estimators", "learning_rate", "feature_fraction", "bagging_fraction", "reg_lambda",
    "max_bin",
    "num_threads", "seed", "gate_quantiles", "rsi_period", "ema_fast", "ema_slow", "macd_signal", "macd_threshold",
)


_IN_SAMPLE_EVERY = 4


def training_hash(config: AssessmentConfig, features: Sequence[str], context: str = "") -> str:
    """16 hex digits over the training fields, the feature names (an added feature retrains) and
    ``context`` (the market and what produced the market-state inputs)."""
    payload = {k: v for k, v in config.model_dump(mode="json").items() if k in TRAINING_FIELDS}
    payload["features"] = list(features)
    if context:
        payload["context"] = context
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def model_id(strategy_id: str, train_hash: str, cut: date) -> str:
    """``assessment:<strategy>:<training hash>:<cut session>``."""
    return f"assessment:{strategy_id}:{train_hash}:{cut.isoformat()}"


def _rank(x: np.ndarray) -> np.ndarray:
    r = np.empty(x.shape[0])
    r[np.argsort(x, kind="stable")] = np.arange(x.shape[0])
    return r


def per_date_metrics(date_of_row: np.ndarray, prediction: np.ndarray, label: np.ndarray,
                     quantiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Per date (ascending): Rank IC of ``prediction`` vs ``label`` and the top-minus-bottom
    quantile mean label (NaN for a date with fewer than ``2 x quantiles`` rows)."""
    order = np.argsort(date_of_row, kind="stable")
    d, p, y = date_of_row[order], prediction[order], label[order]
    bounds = np.flatnonzero(np.diff(d)) + 1
    ics, spreads = [], []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, d.size], strict=True):
        pp, yy = p[lo:hi], y[lo:hi]
        n = hi - lo
        if n < 2 * quantiles:
            ics.append(np.nan)
            spreads.append(np.nan)
            continue
        rp, ry = _rank(pp), _rank(yy)
        sp, sy = rp.std(), ry.std()
        ics.append(float(np.mean((rp - rp.mean()) * (ry - ry.mean())) / (sp * sy)) if sp > 0 and sy > 0 else np.nan)
        k = max(1, n // quantiles)
        spreads.append(float(yy[rp >= n - k].mean() - yy[rp < k].mean()))
    return np.array(ics), np.array(spreads)


def _sharpe(spreads: np.ndarray, horizon: int) -> float:
    s = spreads[np.isfinite(spreads)]
    if s.size < 3 or s.std(ddof=1) == 0:
        return float("nan")
    return float(s.mean() / s.std(ddof=1) * np.sqrt(252.0 / horizon))


def _hit(spreads: np.ndarray) -> float:
    s = spreads[np.isfinite(spreads)]
    return float((s > 0).mean()) if s.size else float("nan")


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _params(config: AssessmentConfig, num_leaves: int, min_child_samples: int) -> dict:
    return {
        "objective": "regression", "learning_rate": config.learning_rate, "num_leaves": num_leaves,
        "min_data_in_leaf": min_child_samples, "feature_fraction": config.feature_fraction,
        "lambda_l2": config.reg_lambda, "max_bin": config.max_bin, "num_threads": config.num_threads,
        "seed": config.seed, "deterministic": True, "force_row_wise": True, "verbosity": -1,
        **({"bagging_fraction": config.bagging_fraction, "bagging_freq": 1} if config.bagging_fraction < 1 else {}),
    }


def _train(x: np.ndarray, y: np.ndarray, params: dict, rounds: int, names: Sequence[str]) -> lgb.Booster:
    data = lgb.Dataset(x, label=y, feature_name=list(names), free_raw_data=True,
                       params={"max_bin": params["max_bin"], "verbosity": -1})
    return lgb.train(params, data, num_boost_round=rounds)


@dataclass(frozen=True, eq=False)
class ModelRecord:
    """One walk-forward model: what it was trained on, its CV folds, and the model itself."""

    model_id: str
    cut: date
    training_hash: str
    params: dict
    features: tuple[str, ...]
    train_start: date
    train_end: date  # the last sample date
    label_end: date  # the last session any training label used (< cut - embargo)
    n_rows: int
    n_dates: int
    folds: tuple[dict, ...]  # the chosen parameters' folds (see fit_at)
    grid: tuple[dict, ...]  # every parameter set's mean OOS Rank IC
    oos: dict  # pooled over the chosen set's folds: rank_ic, sharpe, hit_rate, n_dates
    model_text: str = field(repr=False)
    trained_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))

    @cached_property
    def booster(self) -> lgb.Booster:
        return lgb.Booster(model_str=self.model_text)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, num_threads=int(self.params.get("num_threads", 1)))

    def gates(self, config: AssessmentConfig) -> tuple[bool, dict, list[str]]:
        """``(passed, detail, reasons)`` of the promotion gates under ``config``'s thresholds."""
        fold_sharpes = [f["oos_sharpe"] for f in self.folds]
        worst = min((s for s in fold_sharpes if s is not None and np.isfinite(s)), default=float("nan"))
        sharpe, hit = self.oos.get("sharpe"), self.oos.get("hit_rate")
        sharpe = float("nan") if sharpe is None else sharpe
        hit = float("nan") if hit is None else hit
        detail = {
            "oos_sharpe": {"value": sharpe, "min": config.gate_min_oos_sharpe,
                           "passed": bool(np.isfinite(sharpe) and sharpe >= config.gate_min_oos_sharpe)},
            "oos_hit_rate": {"value": hit, "min": config.gate_min_hit_rate,
                             "passed": bool(np.isfinite(hit) and hit >= config.gate_min_hit_rate)},
            "worst_fold_sharpe": {"value": worst, "min": 0.0 if config.gate_no_negative_fold else None,
                                  "passed": bool(not config.gate_no_negative_fold or (np.isfinite(worst) and worst >= 0))},
        }
        reasons = []
        if not detail["oos_sharpe"]["passed"]:
            reasons.append(f"OOS Sharpe {sharpe:.3f} < {config.gate_min_oos_sharpe}")
        if not detail["oos_hit_rate"]["passed"]:
            reasons.append(f"OOS hit rate {hit:.3f} < {config.gate_min_hit_rate}")
        if not detail["worst_fold_sharpe"]["passed"]:
            reasons.append(f"a fold has a negative OOS Sharpe ({worst:.3f})")
        return not reasons, detail, reasons

    def metadata(self) -> dict:
        """Everything but the model itself (``models.metrics_json``); ``from_metadata`` inverts it."""
        return {
            "model_id": self.model_id, "cut": self.cut.isoformat(), "training_hash": self.training_hash,
            "params": self.params, "features": list(self.features), "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(), "label_end": self.label_end.isoformat(), "n_rows": self.n_rows,
            "n_dates": self.n_dates, "folds": list(self.folds), "grid": list(self.grid), "oos": self.oos,
            "trained_at": self.trained_at.isoformat(),
        }

    @classmethod
    def from_metadata(cls, meta: dict, model_text: str) -> ModelRecord:
        return cls(
            model_id=meta["model_id"], cut=date.fromisoformat(meta["cut"]), training_hash=meta["training_hash"],
            params=meta["params"], features=tuple(meta["features"]), train_start=date.fromisoformat(meta["train_start"]),
            train_end=date.fromisoformat(meta["train_end"]), label_end=date.fromisoformat(meta["label_end"]),
            n_rows=int(meta["n_rows"]), n_dates=int(meta["n_dates"]), folds=tuple(meta["folds"]),
            grid=tuple(meta["grid"]), oos=meta["oos"], model_text=model_text,
            trained_at=datetime.fromisoformat(meta["trained_at"]))


class ModelStore(Protocol):
    """Where trained models are kept between runs."""

    def get(self, model_id: str) -> ModelRecord | None: ...

    def put(self, record: ModelRecord) -> None: ...


class MemoryModelStore:
    """A ``ModelStore`` in a dict (tests, benches, one-off research runs)."""

    def __init__(self) -> None:
        self.records: dict[str, ModelRecord] = {}
        self.trained = 0

    def get(self, model_id: str) -> ModelRecord | None:
        return self.records.get(model_id)

    def put(self, record: ModelRecord) -> None:
        self.records[model_id_of(record)] = record
        self.trained += 1


def model_id_of(record: ModelRecord) -> str:
    return record.model_id


def _json_float(x: float) -> float | None:
    return float(f"{x:.10g}") if x is not None and np.isfinite(x) else None


def fit_at(cut: int, cube: np.ndarray, labels: np.ndarray, names: Sequence[str], sessions: Sequence[date],
           config: AssessmentConfig, shift: int, record_id: str, train_hash: str) -> ModelRecord | None:
    """Select, by purged CV, and fit the model of cut row ``cut`` (see the module docstring).

    ``cube`` is (sessions, instruments, features), ``labels`` the raw forward returns
    (``labels.forward_returns``). Returns None when the window holds too few dated labels for
    the folds.
    """
    c = config
    h = c.horizon_sessions + shift
    dates = training_dates(cut, h, c.embargo_sessions, c.train_window_sessions, c.train_stride_sessions, first=0)
    known = np.isfinite(labels[dates])
    dates = dates[known.sum(axis=1) >= 2 * c.gate_quantiles]
    if dates.size < 2 * c.cv_folds:
        return None
    known = np.isfinite(labels[dates])
    date_idx, inst_idx = np.nonzero(known)
    row_date = dates[date_idx]
    x = cube[row_date, inst_idx]
    y_raw = labels[row_date, inst_idx]
    # Target: the label's rank within its date, centred in [-0.5, 0.5].
    y = np.empty_like(y_raw)
    bounds = np.flatnonzero(np.diff(row_date)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, row_date.size], strict=True):
        y[lo:hi] = (_rank(y_raw[lo:hi]) + 0.5) / (hi - lo) - 0.5

    folds = purged_kfold(dates, dates + h, c.cv_folds, c.embargo_sessions)
    grid, per_set = [], []
    for leaves in c.num_leaves_grid:
        for min_child in c.min_child_samples_grid:
            params = _params(c, leaves, min_child)
            fold_rows = []
            for fold in folds:
                tr = np.isin(row_date, fold.train)
                te = np.isin(row_date, fold.test)
                booster = _train(x[tr], y[tr], params, c.n_estimators, names)
                # In-sample Rank IC on every 4th training date (predicting them all costs a third of a fit).
                ins = np.isin(row_date, fold.train[::_IN_SAMPLE_EVERY])
                is_ic, _ = per_date_metrics(row_date[ins], booster.predict(x[ins], num_threads=c.num_threads),
                                            y_raw[ins], c.gate_quantiles)
                oos_ic, spreads = per_date_metrics(row_date[te], booster.predict(x[te], num_threads=c.num_threads),
                                                   y_raw[te], c.gate_quantiles)
                fold_rows.append({
                    "fold": fold.index, "train_start": sessions[int(fold.train[0])].isoformat(),
                    "train_end": sessions[int(fold.train[-1])].isoformat(),
                    "test_start": sessions[int(fold.test[0])].isoformat(),
                    "test_end": sessions[int(fold.test[-1])].isoformat(),
                    "purged_dates": fold.purged, "embargoed_dates": fold.embargoed,
                    "train_rows": int(tr.sum()), "test_rows": int(te.sum()),
                    "is_rank_ic": _json_float(_nanmean(is_ic)), "oos_rank_ic": _json_float(_nanmean(oos_ic)),
                    "oos_sharpe": _json_float(_sharpe(spreads, h)), "oos_hit_rate": _json_float(_hit(spreads)),
                    "_spreads": spreads, "_ics": oos_ic,
                })
            score = _nanmean([f["oos_rank_ic"] if f["oos_rank_ic"] is not None else np.nan for f in fold_rows])
            grid.append({"num_leaves": leaves, "min_child_samples": min_child, "mean_oos_rank_ic": _json_float(score)})
            per_set.append((score, params, fold_rows))
    best = max(range(len(per_set)), key=lambda i: (np.nan_to_num(per_set[i][0], nan=-np.inf), -i))
    _, params, fold_rows = per_set[best]
    spreads = np.concatenate([f.pop("_spreads") for f in fold_rows])
    ics = np.concatenate([f.pop("_ics") for f in fold_rows])
    for _, _, rows in per_set:
        for f in rows:
            f.pop("_spreads", None)
            f.pop("_ics", None)
    booster = _train(x, y, params, c.n_estimators, names)
    return ModelRecord(
        model_id=record_id, cut=sessions[cut], training_hash=train_hash,
        params={k: v for k, v in params.items() if k != "verbosity"} | {"n_estimators": c.n_estimators},
        features=tuple(names), train_start=sessions[int(dates[0])], train_end=sessions[int(dates[-1])],
        label_end=sessions[int(dates[-1]) + h], n_rows=int(row_date.size), n_dates=int(dates.size),
        folds=tuple(fold_rows), grid=tuple(grid),
        oos={"rank_ic": _json_float(_nanmean(ics)), "sharpe": _json_float(_sharpe(spreads, h)),
             "hit_rate": _json_float(_hit(spreads)), "n_dates": int(np.isfinite(spreads).sum())},
        model_text=booster.model_to_string(),
    )
