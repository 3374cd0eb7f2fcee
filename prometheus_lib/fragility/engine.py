"""The fragility alpha engine: per instrument per session, P(a large adverse move) and its drivers.

The fragility score at session T is a LightGBM classifier's probability that the instrument's
holder loses ``drawdown_threshold`` or more (total return) at some point within the next
``horizon_sessions`` sessions (``labels.forward_drawdown``), from the causal features of
``features`` at T.

Walk-forward (``labels``): models are fitted at the anchored refit rows k of the panel, each on
the rows ``t`` in ``[k - train_window_sessions, k - N - 1]`` with ``t % train_stride_sessions ==
0`` whose instrument is listed and whose label is known — every label used ended strictly before
k. The model fitted at k scores rows k .. next refit - 1. A fit with fewer than
``min_positive_labels`` events is skipped and the previous model keeps scoring; rows before the
first fit get no output. The output at T therefore reads panel rows ``<= T`` only, and does not
depend on the range asked for. LightGBM runs with ``deterministic=True``, ``force_row_wise=True``,
a fixed seed and thread count: the same panel and config give bit-identical scores.

A row is scored when the instrument is listed at T and has its ``vol_21`` (21 sessions after
listing). Its outputs:

* ``fragility_score``: the probability;
* ``components_json``: the drivers — ``{"base": b, "drivers": [{"contribution", "feature",
  "value"} x 5]}``: the five features with the largest contributions by absolute value
  (``drivers``: path attributions by default, TreeSHAP on request; in log-odds, ``base`` plus
  every feature's contribution is the logit of the score), with the feature's value at T;
* ``scenario_losses_json``: the linear stress loss ``beta x`` a market shock,
  ``{"market_-10%": -0.1 beta, "market_-20%": -0.2 beta}`` (null without a beta).

The per-row JSON is exactly what ``records.dumps`` writes (sorted keys, 12 significant digits),
assembled column-wise: about 2 us a row, where a ``dumps`` per row costs 30.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import lightgbm as lgb
import numpy as np
import polars as pl

from prometheus_lib.config.models import FragilityConfig
from prometheus_lib.fragility.drivers import contributions
from prometheus_lib.fragility.features import feature_names, panel_features
from prometheus_lib.fragility.labels import drawdown_labels, refit_rows, training_rows
from prometheus_lib.market_state.panel import MarketPanel
from prometheus_lib.storage.catalog import get_table

__all__ = ["FragilityAlphaEngine", "FragilityResult"]

_TOP = 5  # drivers per row, most fragile instruments per session
_SHOCKS = (("market_-10%", -0.10), ("market_-20%", -0.20))


@dataclass(frozen=True)
class FragilityResult:
    """One run's output.

    Attributes
    ----------
    measures
        ``fragility_measures`` rows (catalogue schema): one per scored instrument per session in
        ``[start, end]`` that has a fitted model.
    sessions
        The sessions that have rows, ascending.
    decisions, inputs
        Per session of ``sessions``: the ``engine_decisions`` ``decision_json`` (rows scored, mean
        probability, the five most fragile instruments, the model) and ``inputs_json`` (the
        model's fit session and training window, its training rows and events, instruments listed).
    """

    measures: pl.DataFrame
    sessions: list[date]
    decisions: list[dict]
    inputs: list[dict]


@dataclass(frozen=True)
class _Fit:
    """A model fitted at panel row ``row`` and what it was trained on."""

    row: int
    booster: lgb.Booster
    train_first: int
    train_last: int
    n_rows: int
    n_events: int


class FragilityAlphaEngine:
    """Walk-forward LightGBM estimate of P(drawdown beyond a threshold within N sessions)."""

    name = "fragility"

    def __init__(self, config: FragilityConfig):
        self.config = config
        self.config_hash = config.config_hash()

    def _training_set(self, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, row x instrument mask of known labels) training the fit at ``k``; None if too few events."""
        c = self.config
        rows = training_rows(k, c.horizon_sessions, c.train_window_sessions, c.train_stride_sessions)
        known = np.isfinite(labels[rows])
        n_events = int(np.nansum(labels[rows]))
        if n_events < c.min_positive_labels or n_events == int(known.sum()):
            return None
        return rows, known

    def _fit(self, k: int, rows: np.ndarray, known: np.ndarray, cube: np.ndarray, labels: np.ndarray,
             names: list[str]) -> _Fit:
        """The model fitted at row ``k`` on the known labels of ``rows`` (``_training_set``)."""
        c = self.config
        x, y = cube[rows][known], labels[rows][known]
        params = {
            "objective": "binary", "learning_rate": c.learning_rate, "num_leaves": c.num_leaves,
            "min_data_in_leaf": c.min_child_samples, "lambda_l2": c.reg_lambda, "max_bin": c.max_bin,
            "num_threads": c.num_threads, "seed": c.seed, "deterministic": True, "force_row_wise": True,
            "verbosity": -1,
        }
        data = lgb.Dataset(x, label=y, feature_name=names, params={"max_bin": c.max_bin, "verbosity": -1})
        booster = lgb.train(params, data, num_boost_round=c.n_estimators)
        return _Fit(k, booster, int(rows[0]), int(rows[-1]), len(y), int(y.sum()))

    def _model_id(self, panel: MarketPanel, fit: _Fit) -> str:
        return f"fragility:{panel.market_id}:{self.config_hash[:8]}:{panel.session_dates()[fit.row].isoformat()}"

    def run(self, panel: MarketPanel, start: date, end: date, regimes: pl.DataFrame | None = None) -> FragilityResult:
        """Fragility measures of ``panel``'s instruments for the sessions in ``[start, end]``.

        ``regimes`` (optional): catalogue ``regimes`` rows (``market_id``, ``session_date``,
        ``probabilities_json``); the probabilities of ``config.regime_states`` become features.
        """
        c = self.config
        wanted = panel.rows_between(start, end)
        schedule = refit_rows(panel.n_sessions, c.min_train_sessions, c.refit_every_sessions)
        wanted = wanted[wanted >= schedule[0]] if len(schedule) else wanted[:0]
        if not len(wanted):
            return _empty_result()
        scored = panel.listed & np.isfinite(panel.vol_21)  # the rows a model scores, and the only ones it learns from
        labels = np.where(scored, drawdown_labels(panel.log_return, panel.listed, c.horizon_sessions,
                                                  c.drawdown_threshold), np.nan)
        # The model of a refit row: its own fit, or the latest earlier one where a fit was skipped.
        training = {k: self._training_set(k, labels) for k in schedule[schedule <= wanted[-1]].tolist()}
        model_row: dict[int, int] = {}
        latest = -1
        for k, qualifies in training.items():
            latest = k if qualifies is not None else latest
            model_row[k] = latest
        blocks = schedule[np.searchsorted(schedule, wanted, side="right") - 1]
        uses = np.array([model_row[int(b)] for b in blocks])
        wanted, uses = wanted[uses >= 0], uses[uses >= 0]
        if not len(wanted):
            return _empty_result()

        names = feature_names(c.features, c.regime_states, regimes is not None)
        cube = panel_features(panel, c.features, regimes, c.regime_states)
        fits = {k: self._fit(k, *training[k], cube, labels, names) for k in np.unique(uses).tolist()}
        # Score each model's rows; models come in time order and nonzero() is row-major, so the
        # concatenation is sorted by (session, instrument).
        parts = []
        for k, fit in fits.items():
            block = wanted[uses == k]
            r, i = np.nonzero(scored[block])
            x = cube[block[r], i]
            parts.append((block[r], i, fit.booster.predict(x), contributions(fit.booster, x, c.contributions), x))
        rows, cols = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        if not len(rows):
            return _empty_result()
        prob = np.concatenate([p[2] for p in parts])
        row_model = dict(zip(wanted.tolist(), uses.tolist()))
        model_ids = {k: self._model_id(panel, fit) for k, fit in fits.items()}
        measures = self._measures(panel, rows, cols, prob, np.concatenate([p[3] for p in parts]),
                                  np.concatenate([p[4] for p in parts]), names,
                                  [model_ids[row_model[r]] for r in rows.tolist()])
        days = panel.session_dates()
        sessions, decisions, inputs = [], [], []
        bounds = np.flatnonzero(np.diff(rows)) + 1
        for seg in np.split(np.arange(len(rows)), bounds):
            t = int(rows[seg[0]])
            fit = fits[row_model[t]]
            top = seg[np.lexsort((cols[seg], -prob[seg]))[:_TOP]]
            sessions.append(days[t])
            decisions.append({
                "n_scored": len(seg), "mean_probability": float(prob[seg].mean()),
                "most_fragile": [[panel.instrument_ids[cols[j]], float(prob[j])] for j in top],
                "model_id": model_ids[fit.row],
            })
            inputs.append({
                "model_fit_session": days[fit.row].isoformat(),
                "train_first_session": days[fit.train_first].isoformat(),
                "train_last_session": days[fit.train_last].isoformat(),
                "n_train_rows": fit.n_rows, "n_train_events": fit.n_events,
                "n_listed": int(panel.listed[t].sum()), "features": names,
            })
        return FragilityResult(measures, sessions, decisions, inputs)

    def _measures(self, panel: MarketPanel, rows: np.ndarray, cols: np.ndarray, prob: np.ndarray,
                  contrib: np.ndarray, values: np.ndarray, names: list[str], model_ids: list[str]) -> pl.DataFrame:
        c = self.config
        n = len(rows)
        top = np.argsort(-np.abs(contrib[:, :-1]), axis=1, kind="stable")[:, :_TOP]
        top_contrib, top_value = np.take_along_axis(contrib, top, axis=1), np.take_along_axis(values, top, axis=1)
        top_name = np.array(names, dtype=object)[top]
        beta = panel.beta[rows, cols]
        text = pl.DataFrame({
            "base": _json_numbers(contrib[:, -1]),
            **{f"c{j}": _json_numbers(top_contrib[:, j]) for j in range(top.shape[1])},
            **{f"v{j}": _json_numbers(top_value[:, j]) for j in range(top.shape[1])},
            **{f"f{j}": top_name[:, j] for j in range(top.shape[1])},
            **{key: _json_numbers(shock * beta) for key, shock in _SHOCKS},
            "has_beta": np.isfinite(beta),
        })
        components = [pl.lit('{"base":'), pl.col("base"), pl.lit(',"drivers":[')]
        for j in range(top.shape[1]):
            components += [pl.lit(("," if j else "") + '{"contribution":'), pl.col(f"c{j}"), pl.lit(',"feature":"'),
                           pl.col(f"f{j}"), pl.lit('","value":'), pl.col(f"v{j}"), pl.lit("}")]
        components.append(pl.lit("]}"))
        scenario = [pl.lit("{")]
        for j, (key, _) in enumerate(_SHOCKS):
            scenario += [pl.lit(("," if j else "") + f'"{key}":'), pl.col(key)]
        scenario.append(pl.lit("}"))
        json_cols = text.select(pl.concat_str(components).alias("components_json"),
                                pl.when(pl.col("has_beta")).then(pl.concat_str(scenario))
                                .alias("scenario_losses_json"))
        days = pl.Series(panel.sessions[rows]).cast(pl.Date)
        return pl.DataFrame({
            "entity_type": ["INSTRUMENT"] * n,
            "entity_id": np.array(panel.instrument_ids, dtype=object)[cols],
            "session_date": days,
            "market_id": [panel.market_id] * n,
            "fragility_score": prob,
            "scenario_losses_json": json_cols["scenario_losses_json"],
            "components_json": json_cols["components_json"],
            "horizon_sessions": [c.horizon_sessions] * n,
            "drawdown_threshold": [c.drawdown_threshold] * n,
            "model_id": model_ids,
            "config_hash": [self.config_hash] * n,
        }, schema=get_table("fragility_measures").polars_schema)


def _json_numbers(values: np.ndarray) -> list[str]:
    """Each value exactly as ``records.dumps`` writes it: ``repr(float(f"{v:.12g}"))``, ``null`` if not finite.

    Vectorised for 1e-4 <= |v| < 1e15 (where ``repr`` is positional, like Polars' float format):
    the 12-digit mantissa ``m = rint(v * 10**k)`` is exact unless ``v * 10**k`` lies within 1e-3
    of a half (its rounding error is below 1e-4), and ``m / 10**k`` (exact operands, |k| <= 15)
    is the double nearest the 12-digit decimal, whose shortest repr is that decimal. Other values
    (and the near-halves) take the scalar path.
    """
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        easy = (np.abs(v) >= 1e-4) & (np.abs(v) < 1e15)
        k = 11 - np.floor(np.log10(np.where(easy, np.abs(v), 1.0))).astype(np.int64)
        scale = 10.0 ** np.abs(k)
        scaled = np.where(k >= 0, v * scale, v / scale)
        m = np.rint(scaled)
        easy &= (np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) > 1e-3) & (np.abs(m) >= 1e11) & (np.abs(m) < 1e12)
        rounded = np.where(easy, np.where(k >= 0, m / scale, m * scale), 0.0)
    out = pl.Series(rounded).cast(pl.String).to_numpy().astype(object)
    out[~easy] = [repr(float(f"{x:.12g}")) if math.isfinite(x) else "null" for x in v[~easy].tolist()]
    return out.tolist()


def _empty_result() -> FragilityResult:
    return FragilityResult(pl.DataFrame(schema=get_table("fragility_measures").polars_schema), [], [], [])
