"""The regime engine: a Gaussian HMM per market, fitted walk-forward, read through its filtered posterior.

Model
-----
At each session the market's features (``prometheus_lib.regime.features``; by default the
cross-sectional dispersion of the returns alone) form one observation ``x_t``. A K-state
Gaussian hidden Markov model (``hmmlearn.hmm.GaussianHMM``, diagonal or full covariances)
explains them: a latent state ``s_t`` follows a Markov chain with transition matrix ``A`` and
``x_t | s_t = j ~ N(mu_j, Sigma_j)``. Regimes persist, so EM maximises the posterior under a
Dirichlet prior on each row of ``A`` that adds ``stickiness_sessions`` pseudo-sessions of staying
in the state (a "sticky" HMM): it keeps noise from being explained by fast-switching states.

Walk-forward schedule
---------------------
Refits happen at panel rows ``k >= min_train_sessions`` with
``(k - min_train_sessions) % refit_every_sessions == 0``, counted from the panel's first row, so
the output at T never depends on the range asked for. The fit at k trains on rows ``<= k``
(every row from the panel's first, or the last ``rolling_sessions``; rows before every feature
has a value are skipped) and is used from row k itself up to the row before the next refit:
T's data are known at T's close. A refit with fewer than ``min_train_sessions // 2`` usable rows
is skipped; features being forward-filled, usable rows only grow along the schedule, so skipped
refits only precede the first fit. Sessions before the first fit get no row.

Each fit standardises the features with the mean and standard deviation of its training rows
and starts EM from a deterministic point (state means at quantiles of the stress score below, a
persistent transition matrix, a uniform start distribution that is kept, not fitted), so a fit
is a function of its training rows alone: only the fits in force over the range asked for are
computed. The fitted transition matrix is floored at ``PROB_FLOOR`` (and renormalised): no
state is ever impossible and every expected duration is finite.

State identification
--------------------
After each fit the states are ordered by their stress score: the mean over the features of the
state's standardised mean times the feature's ``STRESS_SIGN`` (+1 for volatility, dispersion,
volume and correlation, -1 for the market return and the drawdown). The calmest state gets
``state_names[0]``, the most stressed the last name, so labels never swap between refits. The
order is relative to the training window: until a window holds a crisis, its most stressed
state is the most stressed it has seen.

Filtered, never smoothed
------------------------
The posterior at T is ``P(s_T | x_start, ..., x_T)``: this module's own forward pass (emission
log-likelihoods in log space, the recursion scaled per step) with the fitted parameters.
hmmlearn's ``predict``/``predict_proba`` (Viterbi, forward-backward) read observations after T
and are never used. At a refit the filter is re-run with the new parameters over the last
``burn_in_sessions`` training rows (a burn-in from the uniform start distribution), so the prior
at the handover is the new model's own filtered state of the recent training rows: every output
at T uses rows ``<= T`` only.
"""


from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
from hmmlearn.hmm import GaussianHMM
from scipy.linalg import solve_triangular

from prometheus_lib.config.models import RegimeConfig
from prometheus_lib.market_state.panel import MarketPanel
from prometheus_lib.market_state.records import dumps
from prometheus_lib.regime.features import STRESS_SIGN, regime_features
from prometheus_lib.storage.catalog import get_table

__all__ = ["PROB_FLOOR", "RegimeEngine", "RegimeFit", "RegimeResult", "forward_filter", "log_emission",
           "stress_quantiles"]

PROB_FLOOR = 1e-12
_STAY_INIT = 0.98  # initial probability of staying in a state
_INIT_BAND = 0.05  # share of training rows around each quantile averaged into a state's initial mean
_INIT_VARIANCE = 0.5  # initial within-state variance, as a share of each standardised feature's
_MIN_VARIANCE = 1e-3  # hmmlearn's default min_covar


_HMMLEARN_LOG = logging.getLogger("hmmlearn.base")


@contextmanager
def _quiet_convergence_monitor() -> Iterator[None]:
    """Silence hmmlearn's "Model is not converging" warnings during a fit.

    Its monitor tracks the likelihood, which sticky (MAP) EM may lower by a hair while raising
    the posterior: every such fit would warn although EM converged.
    """
    level = _HMMLEARN_LOG.level
    _HMMLEARN_LOG.setLevel(logging.ERROR)
    try:
        yield
    finally:
        _HMMLEARN_LOG.setLevel(level)


def stress_quantiles(k: int) -> np.ndarray:
    """Quantiles of the stress score where the K states start: ``1 - (1 - (j + 1/2) / K)^2``.

    Skewed towards the stressed end (0.31, 0.75, 0.97 for K = 3): calm sessions are the many,
    crises the few.
    """
    return 1.0 - (1.0 - (np.arange(k) + 0.5) / k) ** 2


def log_emission(z: np.ndarray, means: np.ndarray, covars: np.ndarray) -> np.ndarray:
    """(rows, K) Gaussian log densities of the standardised rows ``z`` under each state.

    ``covars`` are full (K, F, F) matrices (``GaussianHMM.covars_`` gives them for every
    covariance type).
    """
    n, f = z.shape
    out = np.empty((n, len(means)))
    for j, (mu, cov) in enumerate(zip(means, covars, strict=True)):
        chol = np.linalg.cholesky(cov)
        d = solve_triangular(chol, (z - mu).T, lower=True)
        out[:, j] = -0.5 * (f * np.log(2.0 * np.pi) + (d * d).sum(axis=0)) - np.log(np.diag(chol)).sum()
    return out


def forward_filter(log_b: np.ndarray, startprob: np.ndarray, transmat: np.ndarray) -> np.ndarray:
    """Filtered state probabilities ``P(s_t | x_0..x_t)`` for every row of ``log_b`` (rows, K).

    The scaled forward recursion: ``alpha_t = (alpha_{t-1} A) * b_t``, normalised each step, with
    ``b_t = exp(log_b_t - max_j log_b_tj)`` (the per-row shift cancels in the normalisation).
    Row t reads rows ``<= t`` only.
    """
    b = np.exp(log_b - log_b.max(axis=1, keepdims=True))
    out = np.empty_like(b)
    alpha = startprob * b[0]
    out[0] = alpha = alpha / alpha.sum()
    for t in range(1, len(b)):
        alpha = (alpha @ transmat) * b[t]
        out[t] = alpha = alpha / alpha.sum()
    return out


def _stress_score(z: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """Mean of the standardised features signed so that higher is more stressed (last axis)."""
    return z @ np.array([STRESS_SIGN[f] for f in features]) / len(features)


def _reorder(model: GaussianHMM, order: np.ndarray) -> None:
    """Permute a fitted model's states into ``order`` (in place)."""
    covars = model.covars_[order]
    model.startprob_ = model.startprob_[order]
    model.transmat_ = model.transmat_[np.ix_(order, order)]
    model.means_ = model.means_[order]
    model.covars_ = covars if model.covariance_type == "full" else np.diagonal(covars, axis1=1, axis2=2).copy()


@dataclass(frozen=True, eq=False)
class RegimeFit:
    """One walk-forward fit.

    ``row`` is the refit's panel row (the last training row; the fit is used from it on),
    ``first_row`` the first training row, ``filter_start`` the row its filter starts from
    (``burn_in_sessions`` before ``row``, at the earliest ``first_row``), ``mean``/``scale`` the
    standardisation of the training rows, ``model`` the HMM with its states ordered calmest
    first and ``stress`` their (increasing) stress scores.
    """

    row: int
    first_row: int
    filter_start: int
    session: date
    mean: np.ndarray
    scale: np.ndarray
    model: GaussianHMM
    stress: np.ndarray
    model_id: str

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        """Raw feature rows standardised with the training rows' statistics."""
        return (raw - self.mean) / self.scale

    def filter(self, raw: np.ndarray, last_row: int) -> np.ndarray:
        """Filtered probabilities for panel rows ``filter_start .. last_row`` of the raw features."""
        model = self.model
        z = self.standardise(raw[self.filter_start: last_row + 1])
        return forward_filter(log_emission(z, model.means_, model.covars_), model.startprob_, model.transmat_)


@dataclass(frozen=True)
class RegimeResult:
    """The engine's output for the sessions of a range that have a fit.

    ``regimes`` holds the catalogue ``regimes`` rows; ``probabilities`` (sessions x K, in
    ``state_names`` order), ``states``, ``decisions`` (``engine_decisions.decision_json``) and
    ``inputs`` (``inputs_json``: the features at T) are aligned with ``sessions``.
    """

    regimes: pl.DataFrame
    sessions: list[date]
    probabilities: np.ndarray
    states: list[str]
    decisions: list[dict]
    inputs: list[dict]


class RegimeEngine:
    """Filtered regime probabilities of a market, walk-forward (see the module docstring)."""

    name = "regime"

    def __init__(self, config: RegimeConfig) -> None:
        self.config = config
        self.config_hash = config.config_hash()

    # ------------------------------------------------------------------ schedule and fits
    def refit_rows(self, n_rows: int) -> np.ndarray:
        """Panel rows (of a panel with ``n_rows`` rows) where a refit is scheduled."""
        cfg = self.config
        return np.arange(cfg.min_train_sessions, n_rows, cfg.refit_every_sessions)

    def fit_at(self, panel: MarketPanel, raw: np.ndarray, row: int) -> RegimeFit | None:
        """The fit at panel row ``row`` on the raw features ``raw`` (None: too few usable rows)."""
        cfg = self.config
        lo = 0 if cfg.window == "expanding" else max(0, row - cfg.rolling_sessions + 1)
        usable = np.flatnonzero(np.isfinite(raw[lo: row + 1]).all(axis=1))
        if usable.size < cfg.min_train_sessions // 2:
            return None
        first = lo + int(usable[0])  # features are forward-filled: every row after the first usable one is too
        train = raw[first: row + 1]
        mean = train.mean(axis=0)
        scale = train.std(axis=0)
        scale = np.where(scale > 0.0, scale, 1.0)
        z = (train - mean) / scale
        model = self._em(z)
        stress = _stress_score(model.means_, cfg.features)
        order = np.argsort(stress, kind="stable")
        _reorder(model, order)
        session = panel.sessions[row].astype("datetime64[D]").astype(object)
        model_id = f"{self.name}:{panel.market_id}:{self.config_hash[:8]}:{session.isoformat()}"
        return RegimeFit(row=row, first_row=first, filter_start=max(first, row - cfg.burn_in_sessions),
                         session=session, mean=mean, scale=scale, model=model, stress=stress[order],
                         model_id=model_id)

    def _em(self, z: np.ndarray) -> GaussianHMM:
        """The K-state HMM fitted by (sticky) EM from the deterministic start; transitions floored.

        Start: state means are the average of the rows whose stress score ranks within
        ``_INIT_BAND`` of each ``stress_quantiles(K)`` level, variances ``_INIT_VARIANCE`` of each
        feature's, a persistent transition matrix and a uniform start distribution (kept).
        """
        cfg = self.config
        k = cfg.n_states
        ranked = np.argsort(_stress_score(z, cfg.features), kind="stable")
        half = max(1, int(_INIT_BAND * len(z))) // 2
        centres = (stress_quantiles(k) * (len(z) - 1)).astype(np.int64)
        variance = np.maximum(_INIT_VARIANCE * z.var(axis=0), _MIN_VARIANCE)
        model = GaussianHMM(n_components=k, covariance_type=cfg.covariance_type, n_iter=cfg.max_iter,
                            random_state=cfg.seed, params="tmc", init_params="",
                            transmat_prior=1.0 + cfg.stickiness_sessions * np.eye(k))
        model.startprob_ = np.full(k, 1.0 / k)
        move = (1.0 - _STAY_INIT) / (k - 1)
        model.transmat_ = np.full((k, k), move) + np.eye(k) * (1.0 - k * move)
        model.means_ = np.array([z[ranked[max(0, c - half): c + half + 1]].mean(axis=0) for c in centres])
        model.covars_ = (np.tile(variance, (k, 1)) if cfg.covariance_type == "diag"
                         else np.tile(np.diag(variance), (k, 1, 1)))
        with _quiet_convergence_monitor():
            model.fit(z)
        floored = np.maximum(model.transmat_, PROB_FLOOR)
        model.transmat_ = floored / floored.sum(axis=1, keepdims=True)
        return model

    # ------------------------------------------------------------------ run
    def fits(self, panel: MarketPanel, raw: np.ndarray, first_row: int, last_row: int) -> list[RegimeFit]:
        """The fits in force over panel rows ``first_row .. last_row``, in schedule order."""
        schedule = self.refit_rows(last_row + 1)
        start = max(int(np.searchsorted(schedule, first_row, side="right")) - 1, 0)
        return [fit for row in schedule[start:] if (fit := self.fit_at(panel, raw, int(row))) is not None]

    def run(self, panel: MarketPanel, start: date, end: date) -> RegimeResult:
        """Filtered regime probabilities for the sessions of ``[start, end]`` that have a fit."""
        cfg = self.config
        wanted = panel.rows_between(start, end)
        fits: list[RegimeFit] = []
        if wanted.size:
            panel = panel.truncated(panel.session_dates()[int(wanted[-1])])
            raw = regime_features(panel, cfg)
            fits = self.fits(panel, raw, int(wanted[0]), int(wanted[-1]))
        if not fits:
            return self._result(panel, np.empty(0, dtype=np.int64), np.empty((0, cfg.n_states)), [], np.empty((0, 0)))
        last = int(wanted[-1])
        first = max(int(wanted[0]), fits[0].row)
        probabilities, fit_of = [], []
        for i, fit in enumerate(fits):
            end_row = fits[i + 1].row - 1 if i + 1 < len(fits) else last
            if end_row < first:
                continue
            filtered = fit.filter(raw, end_row)[max(fit.row, first) - fit.filter_start:]
            probabilities.append(filtered)
            fit_of += [i] * len(filtered)
        rows = np.arange(first, last + 1)
        return self._result(panel, rows, np.concatenate(probabilities), [fits[i] for i in fit_of], raw)

    def _result(self, panel: MarketPanel, rows: np.ndarray, probabilities: np.ndarray, fits: list[RegimeFit],
                raw: np.ndarray) -> RegimeResult:
        cfg = self.config
        names = cfg.state_names
        sessions = panel.sessions[rows].astype("datetime64[D]").astype(object).tolist()
        label = probabilities.argmax(axis=1)
        confidence = probabilities[np.arange(len(rows)), label]
        stay = np.array([fit.model.transmat_[j, j] for fit, j in zip(fits, label, strict=True)])
        duration = 1.0 / (1.0 - stay)
        states = [names[j] for j in label]
        decisions, inputs, prob_json = [], [], []
        for i, row in enumerate(rows):
            fit = fits[i]
            probs = dict(zip(names, probabilities[i].tolist(), strict=True))
            prob_json.append(dumps(probs))
            decisions.append({"state": states[i], "probabilities": probs, "confidence": float(confidence[i]),
                              "expected_duration_sessions": float(duration[i]), "model_id": fit.model_id,
                              "fit_session": fit.session.isoformat()})
            inputs.append({"features": dict(zip(cfg.features, raw[row].tolist(), strict=True)),
                           "standardised": dict(zip(cfg.features, fit.standardise(raw[row]).tolist(), strict=True))})
        n = len(rows)
        regimes = pl.DataFrame({
            "market_id": [panel.market_id] * n, "session_date": sessions, "region": [panel.region] * n,
            "regime_label": states, "confidence": confidence, "probabilities_json": prob_json,
            "expected_duration_sessions": duration, "model_id": [fit.model_id for fit in fits],
            "config_hash": [self.config_hash] * n,
        }, schema=get_table("regimes").polars_schema)
        return RegimeResult(regimes=regimes, sessions=sessions, probabilities=probabilities, states=states,
                            decisions=decisions, inputs=inputs)
