"""The synthetic market's price path: simulation, bars, corporate actions and reference data.

Per weekday step ``w`` (see ``world.py``) and slot ``s`` holding occupant ``j`` the latent log
total return is

    r = beta_j * f_region + f_sector + x_j . f_style + idio + jump + alpha + event moves

* ``idio = sigma_j * m_regime * m_fragility * sqrt(h) * t``: a unit-mean GARCH(1,1) ``h`` with
  Student-t shocks ``t`` (heavy tails, volatility clustering);
* ``alpha`` is the sum of the planted signals, each scaled to the occupant's daily idiosyncratic
  vol ``sigma_j``: cross-sectional momentum (z-score of the 12-1 month return), low volatility
  (minus the z-score of the log EWMA volatility), post-earnings drift (a surprise ``s`` moves the
  call session by ``announcement_vol * s`` vols and drifts ``pead_drift_sessions`` after), and
  the slow reversion of the cap towards its target (the stationarity of the cross-section);
* fragility events: a precursor phase (volatility and its volatility rising, volume falling,
  a slight negative drift), a crash (a drawdown of ``fragility_drawdown`` over 1-5 sessions,
  volume spiking) and a recovery of the volatility.

Bars print on the market's sessions only: a holiday's moves wait for the next session. The raw
close is ``(P_prev * exp(R) - dividend) / split_ratio`` so that the holder's total return over
the session is exactly ``exp(R)``; ``adjusted_close`` is the forward-cumulated total-return
price (equal to the close on the listing session, never revised). Splits are decided at a close
above ``split_above`` (or below ``reverse_split_below``) and take effect the next session.
A halted instrument prints its last close with zero volume; the move it missed lands when it
resumes. Every draw of a step comes from ``numpy.random.default_rng([seed, stream, w])``, so a
session's data never depends on the range asked for, and nothing at ``t`` uses draws after ``t``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import polars as pl

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.providers import LoadResult, ReferenceData, empty_frame, provider_schema
from prometheus_lib.data.synthetic.config import STYLE_FACTORS, SyntheticMarketConfig
from prometheus_lib.data.synthetic.universe import SECTORS, Universe, build_universe
from prometheus_lib.data.synthetic.world import STEPS_PER_YEAR, WorldPath, student_t, weekday_ordinal
from prometheus_lib.errors import CalendarError, ConfigError

__all__ = ["PriceWorld"]

_STREAM_PRICES = 1
_RING = 264  # steps of cumulative return kept for the 12-1 momentum look-back
_MOM_FAR, _MOM_NEAR = 261, 22  # 12 months and 1 month in weekdays
_EWMA_LAMBDA = 0.97
_SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0)
_RECOVERY_STEPS = 60
# A drift of c * sigma_idio a day gives a 21-session rank IC of about c * sqrt(21) times the
# idiosyncratic share of the cross-sectional dispersion of returns (0.65-0.9 with the default
# factor loadings): strengths are scaled up by its inverse so that the realised oracle IC lands
# near the configured one (bench/synthetic_facts.py prints both).
_IC_CALIBRATION = 1.25
_SESSION_FIELDS = ("open", "high", "low", "close", "adj", "volume", "shares", "ret", "dividend", "split")
_SIGNAL_FIELDS = ("momentum", "low_vol", "pead", "alpha")


class _Path:
    """Per-session arrays (session ordinal k x slot), grown as the simulation advances."""

    def __init__(self, n: int, n_factors: int) -> None:
        self.n = n
        self.length = 0
        cap = 256
        self.f = {name: np.zeros((cap, n)) for name in _SESSION_FIELDS}
        self.sig = {name: np.zeros((cap, n), dtype=np.float32) for name in _SIGNAL_FIELDS}
        self.occ = np.full((cap, n), -1, dtype=np.int32)
        self.halted = np.zeros((cap, n), dtype=bool)
        self.phase = np.zeros((cap, n), dtype=np.int8)
        self.surprise = np.full((cap, n), np.nan, dtype=np.float32)
        self.regime = np.zeros(cap, dtype=np.int8)
        self.global_regime = np.zeros(cap, dtype=np.int8)
        self.factors = np.zeros((cap, n_factors))

    def reserve(self, length: int) -> None:
        cap = self.regime.shape[0]
        if length <= cap:
            return
        new = max(length, 2 * cap)

        def grow(a: np.ndarray, fill: float | int | bool = 0) -> np.ndarray:
            out = np.full((new, *a.shape[1:]), fill, dtype=a.dtype)
            out[: self.length] = a[: self.length]
            return out

        self.f = {k: grow(v) for k, v in self.f.items()}
        self.sig = {k: grow(v) for k, v in self.sig.items()}
        self.occ = grow(self.occ, -1)
        self.halted = grow(self.halted, False)
        self.phase = grow(self.phase)
        self.surprise = grow(self.surprise, np.nan)
        self.regime = grow(self.regime)
        self.global_regime = grow(self.global_regime)
        self.factors = grow(self.factors)


class _State:
    """Per-slot state carried from one step to the next."""

    def __init__(self, n: int) -> None:
        self.next_step = -1
        self.next_k = 0
        self.occ = np.full(n, -1, dtype=np.int64)
        self.log_close = np.zeros(n)
        self.adj = np.zeros(n)
        self.shares = np.zeros(n)
        self.pending = np.zeros(n)
        self.h = np.ones(n)
        self.ewma = np.zeros(n)
        self.dev = np.zeros(n)
        self.cum = np.zeros(n)
        self.ring = np.zeros((_RING, n))
        self.listed_step = np.zeros(n, dtype=np.int64)
        self.pead_s = np.zeros(n)
        self.pead_age = np.full(n, 10**9, dtype=np.int64)
        self.phase = np.zeros(n, dtype=np.int8)
        self.age = np.zeros(n, dtype=np.int64)
        self.len_pre = np.ones(n, dtype=np.int64)
        self.len_crash = np.ones(n, dtype=np.int64)
        self.drop = np.zeros(n)
        self.halt_left = np.zeros(n, dtype=np.int64)
        self.split_next = np.ones(n)
        self.factor_pending: np.ndarray | None = None
        self.alpha_pending = np.zeros(n)
        self.events: list[list[int | float]] = []  # [occupant, onset_w, crash_w, end_w, drop]
        self.open_event = np.full(n, -1, dtype=np.int64)
        # The occupant's static attributes, per slot (set at listing).
        self.sig_base = np.zeros(n)
        self.beta = np.zeros(n)
        self.sector = np.zeros(n, dtype=np.int64)
        self.styles = np.zeros((n, 3))
        self.turnover = np.zeros(n)


class PriceWorld:
    """Simulates one market's slots on the world's weekday grid; the base of ``SyntheticMarket``."""

    def __init__(self, config: SyntheticMarketConfig | None = None, calendar: TradingCalendar | None = None) -> None:
        self.config = config if config is not None else SyntheticMarketConfig()
        cfg = self.config
        self.calendar = calendar if calendar is not None else TradingCalendar(cfg.calendar_code)
        if self.calendar.code != cfg.calendar_code:
            raise ConfigError(
                f"calendar {self.calendar.code!r} does not match config.calendar_code {cfg.calendar_code!r}"
            )
        if not self.calendar.first_session <= cfg.history_start <= self.calendar.last_session:
            raise ConfigError(
                f"history_start {cfg.history_start} is outside calendar {self.calendar.code}'s range "
                f"{self.calendar.first_session}..{self.calendar.last_session}"
            )
        self.market_id = cfg.market_id
        all_sessions = np.array(
            self.calendar.sessions(self.calendar.first_session, self.calendar.last_session), dtype="datetime64[D]"
        )
        if np.any(np.is_busday(all_sessions, weekmask="0000011")):
            raise ConfigError(f"calendar {self.calendar.code} has weekend sessions; the synthetic world trades on weekdays")
        self._calendar_sessions = all_sessions
        start = int(np.searchsorted(all_sessions, np.datetime64(cfg.history_start, "D"), side="left"))
        self._world_sessions = all_sessions[start:]  # ordinal k -> session date
        self._session_steps = weekday_ordinal(self._world_sessions)
        self._sectors = [SECTORS[i] for i in range(cfg.n_sectors)]
        self._n_factors = 1 + cfg.n_sectors + len(STYLE_FACTORS)
        self._universe = build_universe(cfg, len(self._world_sessions))
        self._world = WorldPath(cfg, self._world_rng)
        self._path = _Path(cfg.n_instruments, self._n_factors)
        self._state = _State(cfg.n_instruments)
        self._lock = threading.RLock()
        u = self._universe
        self._listing_at: dict[int, np.ndarray] = _group(u.listing_k)
        self._delisting_at: dict[int, np.ndarray] = _group(u.delisting_k[u.delisting_k >= 0], np.flatnonzero(u.delisting_k >= 0))
        self._quarter_cache: dict[tuple[int, int], tuple[dict[date, np.ndarray], ...]] = {}
        self._shares_cache: np.ndarray | None = None
        sq = math.sqrt(STEPS_PER_YEAR)
        self._sec_sd = np.array(cfg.regime_sector_vol) / sq
        self._sty_mu = np.array(cfg.style_factor_drift) / STEPS_PER_YEAR
        self._sty_sd = np.array(cfg.style_factor_vol) / sq

    # ------------------------------------------------------------------ helpers
    def _rng(self, stream: int, *key: int) -> np.random.Generator:
        """The market's generator for ``stream`` and ``key`` (the step or session is the last key)."""
        return np.random.default_rng([self.config.seed, stream, *key])

    def _world_rng(self, stream: int, *key: int) -> np.random.Generator:
        """The world's generator (shared by every market of ``world_seed``; the block is the last key)."""
        return np.random.default_rng([self.config.world_seed, stream, *key])

    def _ordinal_date(self, k: int) -> date:
        if k < len(self._world_sessions):
            return self._world_sessions[k].astype(date)
        extra = k - len(self._world_sessions) + 1
        return np.busday_offset(self._world_sessions[-1], extra, roll="forward").astype(date)

    def _ordinals(self, sessions: Sequence[date]) -> tuple[np.ndarray, list[date]]:
        """Validate ``sessions`` and return the world ordinals and dates of those inside the world."""
        days = sorted({_as_date(s) for s in sessions})
        for d in days:
            self.calendar.validate_session(d)
        if not days:
            return np.empty(0, dtype=np.int64), []
        arr = np.array(days, dtype="datetime64[D]")
        keep = arr >= self._world_sessions[0]
        ordinals = np.searchsorted(self._world_sessions, arr[keep]).astype(np.int64)
        return ordinals, [d for d, k in zip(days, keep, strict=True) if k]

    def _session_on_or_after(self, d: date) -> date | None:
        i = int(np.searchsorted(self._calendar_sessions, np.datetime64(d, "D"), side="left"))
        if i >= len(self._calendar_sessions):
            return None
        return self._calendar_sessions[i].astype(date)

    def _quarter_schedule(self, year: int, quarter: int) -> tuple[dict[date, np.ndarray], ...]:
        """Per session of a calendar quarter: occupants holding their call, filing their 10-Q/10-K, going ex-dividend."""
        key = (year, quarter)
        cached = self._quarter_cache.get(key)
        if cached is not None:
            return cached
        u = self._universe
        start = date(year, 3 * (quarter - 1) + 1, 1)
        payers = u.dividend_yield > 0
        result = []
        for days, mask in ((u.call_offset_days, None), (u.call_offset_days + u.filing_lag_days, None),
                           (u.dividend_offset_days, payers)):
            by_session: dict[date, list[int]] = {}
            targets = {int(o): self._session_on_or_after(start + timedelta(days=int(o))) for o in np.unique(days)}
            for j, o in enumerate(days.tolist()):
                if mask is not None and not mask[j]:
                    continue
                s = targets[o]
                if s is not None:
                    by_session.setdefault(s, []).append(j)
            result.append({s: np.array(v, dtype=np.int64) for s, v in by_session.items()})
        out = tuple(result)
        self._quarter_cache[key] = out
        return out

    def _listing_shares(self) -> np.ndarray:
        """Shares of each occupant at listing: its target cap, grown with the region's market since
        the first session (IPOs are as big relative to the index as their slot's rank says), over
        its start price. Read from the world path alone, so reference data needs no price path."""
        if self._shares_cache is None:
            u = self._universe
            n_world = len(self._world_sessions)
            steps = self._session_steps[np.minimum(u.listing_k, n_world - 1)]
            self._world.ensure(int(steps.max()))
            first = int(self._session_steps[0])
            cum = np.concatenate(([0.0], np.cumsum(self._world.market_return[first: int(steps.max()) + 1])))
            grown = u.shares_at_listing * np.exp(cum[steps - first])
            self._shares_cache = np.maximum(np.round(grown, -3), 1000.0)
        return self._shares_cache

    def _scheduled(self, d: date, which: int) -> np.ndarray:
        q = (d.month - 1) // 3 + 1
        return self._quarter_schedule(d.year, q)[which].get(d, np.empty(0, dtype=np.int64))

    # ------------------------------------------------------------------ simulation
    def _ensure(self, last_k: int) -> _Path:
        """Simulate up to and including session ordinal ``last_k`` (ordinals may pass the calendar)."""
        with self._lock:
            path = self._path
            if last_k < path.length:
                return path
            n_world = len(self._world_sessions)
            last_w = int(self._session_steps[min(last_k, n_world - 1)]) + max(0, last_k - n_world + 1) * 2
            path.reserve(last_k + 1)
            self._world.ensure(last_w)
            st = self._state
            if st.next_step < 0:
                st.next_step = int(self._session_steps[0])
            for w in range(st.next_step, last_w + 1):
                k = st.next_k
                is_session = k < n_world and int(self._session_steps[k]) == w
                self._step(w, k if is_session else -1)
                if is_session:
                    st.next_k += 1
            st.next_step = last_w + 1
            path.length = max(path.length, min(st.next_k, last_k + 1))
            if path.length <= last_k:  # past the calendar: nothing more to simulate
                path.length = last_k + 1
            return path

    def _step(self, w: int, k: int) -> None:  # noqa: PLR0915 - one step of the whole market, kept in one place
        cfg, u, st, world = self.config, self._universe, self._state, self._world
        n, n_sec = cfg.n_instruments, cfg.n_sectors
        sq = math.sqrt(STEPS_PER_YEAR)
        reg = int(world.region_regime[w])
        f_mkt = float(world.market_return[w])

        rng = self._rng(_STREAM_PRICES, w)
        zc = rng.standard_normal(n_sec + len(STYLE_FACTORS))
        shock = student_t(rng, cfg.tail_df, n)
        z = rng.standard_normal((6, n))
        uu = rng.random((6, n))

        if k >= 0:
            for j in self._listing_at.get(k, ()):
                self._list(int(j), w)
        occ = st.occ
        active = occ >= 0
        j = np.where(active, occ, 0)
        sig_base = st.sig_base

        f_sec = self._sec_sd[reg] * zc[:n_sec]
        f_sty = self._sty_mu + self._sty_sd * cfg.regime_style_multiplier[reg] * zc[n_sec:]

        # Fragility: the phase sets a volatility and a liquidity multiplier and a drift.
        phase, age = st.phase, st.age
        frac = np.minimum(age / np.maximum(st.len_pre, 1), 1.0)
        vol_mult = np.ones(n)
        liq_mult = np.ones(n)
        frag_r = np.zeros(n)
        pre, crash, after = phase == 1, phase == 2, phase == 3
        vol_mult[pre] = (1.0 + frac[pre]) * np.exp(0.35 * frac[pre] * z[5, pre] - 0.06 * frac[pre] ** 2)
        liq_mult[pre] = 1.0 - 0.55 * frac[pre]
        frag_r[pre] = -0.15 * sig_base[pre]
        vol_mult[crash] = 2.0
        liq_mult[crash] = 2.5
        frag_r[crash] = np.log1p(-st.drop[crash]) / st.len_crash[crash]
        vol_mult[after] = 1.0 + np.maximum(0.0, 1.0 - age[after] / _RECOVERY_STEPS)

        # Planted signals, from the state before this step's move.
        valid_mom = active & (w - st.listed_step >= _MOM_FAR)
        mom_raw = st.ring[(w - _MOM_NEAR) % _RING] - st.ring[(w - _MOM_FAR) % _RING]
        z_mom = _masked_z(mom_raw, valid_mom)
        z_lv = -_masked_z(np.log(np.maximum(st.ewma, 1e-12)), active)
        pead_steps = int(round(cfg.pead_drift_sessions * STEPS_PER_YEAR / 252))
        c_mom = _IC_CALIBRATION * cfg.momentum_strength / math.sqrt(21.0)
        c_lv = _IC_CALIBRATION * cfg.low_vol_strength / math.sqrt(21.0)
        c_pead = _IC_CALIBRATION * cfg.pead_strength / math.sqrt(21.0)
        pead = np.where(st.pead_age < pead_steps, c_pead * sig_base * st.pead_s, 0.0)
        alpha = c_mom * sig_base * z_mom + c_lv * sig_base * z_lv + pead

        announcement = np.zeros(n)
        called = np.zeros(n, dtype=bool)
        if k >= 0:
            d = self._world_sessions[k].astype(date)
            who = self._scheduled(d, 0)
            if who.size:
                slots = u.slot[who]
                mine = occ[slots] == who
                called[slots[mine]] = True
                st.pead_s[called] = z[4, called]
                st.pead_age[called] = 0
                announcement[called] = cfg.announcement_vol * sig_base[called] * z[4, called]

        reg_idio = cfg.regime_idio_multiplier[reg]
        eps = np.sqrt(st.h) * shock
        idio = sig_base * reg_idio * vol_mult * eps
        st.h = (1.0 - cfg.garch_alpha - cfg.garch_beta) + cfg.garch_alpha * eps * eps + cfg.garch_beta * st.h
        jump = np.where(uu[0] < cfg.regime_jump_probability[reg], cfg.jump_mean + cfg.jump_std * z[1], 0.0)
        r = st.beta * f_mkt + f_sec[st.sector] + st.styles @ f_sty + idio + jump + alpha + frag_r + announcement
        r = np.where(active, r, 0.0)

        st.cum += r
        st.ring[w % _RING] = st.cum
        st.dev += np.where(active, r - f_mkt, 0.0)
        st.ewma = np.where(active, _EWMA_LAMBDA * st.ewma + (1.0 - _EWMA_LAMBDA) * r * r, st.ewma)
        st.pead_age += 1
        st.pending += r
        st.alpha_pending += np.where(active, alpha, 0.0)
        factors = np.concatenate(([f_mkt], f_sec, f_sty))
        st.factor_pending = factors if st.factor_pending is None else st.factor_pending + factors

        # Fragility phases advance.
        st.age += 1
        onset = active & (phase == 0) & (uu[1] < cfg.fragility_rate * cfg.regime_fragility_multiplier[reg] / STEPS_PER_YEAR)
        if onset.any():
            lo, hi = cfg.fragility_precursor_sessions
            st.len_pre[onset] = np.round((lo + uu[2, onset] * (hi - lo)) * STEPS_PER_YEAR / 252).astype(np.int64)
            clo, chi = cfg.fragility_crash_sessions
            st.len_crash[onset] = np.floor(clo + uu[3, onset] * (chi - clo + 1)).astype(np.int64).clip(clo, chi)
            dlo, dhi = cfg.fragility_drawdown
            st.drop[onset] = dlo + uu[4, onset] * (dhi - dlo)
            st.phase[onset] = 1
            st.age[onset] = 0
            for s in np.flatnonzero(onset):
                st.open_event[s] = len(st.events)
                st.events.append([int(occ[s]), w, -1, -1, float(st.drop[s])])
        to_crash = (st.phase == 1) & (st.age >= st.len_pre) & ~onset
        to_after = (st.phase == 2) & (st.age >= st.len_crash)
        to_calm = (st.phase == 3) & (st.age >= _RECOVERY_STEPS)
        for s in np.flatnonzero(to_crash):
            st.events[st.open_event[s]][2] = w + 1
        for s in np.flatnonzero(to_after):
            st.events[st.open_event[s]][3] = w
        st.phase[to_crash], st.age[to_crash] = 2, 0
        st.phase[to_after], st.age[to_after] = 3, 0
        st.phase[to_calm], st.age[to_calm] = 0, 0

        if k < 0:
            return
        self._print_session(w, k, reg, r, sig_base, vol_mult, liq_mult, called, z, uu,
                            {"momentum": z_mom, "low_vol": z_lv, "pead": pead})

    def _list(self, j: int, w: int) -> None:
        u, st = self._universe, self._state
        s = int(u.slot[j])
        st.occ[s] = j
        st.log_close[s] = math.log(u.start_price[j])
        st.adj[s] = u.start_price[j]
        # An IPO lists at its target cap scaled by the market's growth since the world began, so
        # that newcomers are as big, relative to the index, as the slot's rank says.
        st.shares[s] = self._listing_shares()[j]
        st.pending[s] = 0.0
        st.h[s] = 1.0
        st.ewma[s] = (u.idio_vol[j] / math.sqrt(STEPS_PER_YEAR)) ** 2
        st.sig_base[s] = u.idio_vol[j] / math.sqrt(STEPS_PER_YEAR)
        st.beta[s] = u.beta[j]
        st.sector[s] = u.sector[j]
        st.styles[s] = u.styles[j]
        st.turnover[s] = u.turnover[j]
        st.dev[s] = 0.0
        st.listed_step[s] = w
        st.pead_s[s] = 0.0
        st.pead_age[s] = 10**9
        st.phase[s] = 0
        st.age[s] = 0
        st.halt_left[s] = 0
        st.split_next[s] = 1.0
        st.alpha_pending[s] = 0.0

    def _print_session(self, w, k, reg, r, sig_base, vol_mult, liq_mult, called, z, uu, signals) -> None:  # noqa: PLR0913, PLR0915
        cfg, u, st, path = self.config, self._universe, self._state, self._path
        n = cfg.n_instruments
        d = self._world_sessions[k].astype(date)
        occ = st.occ
        active = occ >= 0
        j = np.where(active, occ, 0)
        listing = np.zeros(n, dtype=bool)
        for jj in self._listing_at.get(k, ()):
            listing[u.slot[jj]] = True
        delisting = np.zeros(n, dtype=bool)
        for jj in self._delisting_at.get(k, ()):
            s = u.slot[jj]
            if occ[s] == jj:
                delisting[s] = True

        new_halt = active & ~listing & ~delisting & (st.halt_left == 0) & (
            uu[5] < cfg.halt_rate * np.where(st.phase == 2, 5.0, 1.0))
        st.halt_left[new_halt] = 1 + (uu[2, new_halt] * 3).astype(np.int64).clip(0, 2)
        halted = active & (st.halt_left > 0) & ~listing
        trading = active & ~halted & ~listing

        prev_close = np.exp(st.log_close)
        R = st.pending
        sqy = math.sqrt(STEPS_PER_YEAR)
        sig_day = np.sqrt((st.beta * cfg.regime_market_vol[reg] / sqy) ** 2
                          + (cfg.regime_sector_vol[reg] / sqy) ** 2
                          + (sig_base * cfg.regime_idio_multiplier[reg] * vol_mult * np.sqrt(st.h)) ** 2)
        gap = cfg.overnight_share * R + 0.3 * sig_day * z[2]

        dividend = np.zeros(n)
        payers = self._scheduled(d, 2)
        if payers.size:
            slots = u.slot[payers]
            mine = (occ[slots] == payers) & trading[slots]
            ps = slots[mine]
            amount = np.round(u.dividend_yield[payers[mine]] / 4.0 * prev_close[ps], 2)
            dividend[ps] = np.minimum(amount, np.round(0.1 * prev_close[ps] * np.exp(np.minimum(R[ps], gap[ps])), 2))
            dividend[ps] = np.maximum(dividend[ps], 0.0)
        ratio = np.where(trading, st.split_next, 1.0)

        close = np.where(trading, (prev_close * np.exp(R) - dividend) / ratio, prev_close)
        open_raw = (prev_close * np.exp(gap) - dividend) / ratio
        open_ = np.where(trading, np.where(open_raw > 0.0, open_raw, close), prev_close)
        # Listing session: the IPO prices at the start price; the day's move is the first open-to-close.
        lst = np.flatnonzero(listing)
        start = u.start_price[occ[lst]] if lst.size else np.empty(0)
        close[lst] = start
        open_[lst] = start * np.exp(-0.5 * np.abs(r[lst]) - 0.3 * sig_day[lst] * z[2, lst])

        up = np.minimum(0.5 * sig_day * np.abs(z[3]), 0.5)
        down = np.minimum(0.5 * sig_day * np.abs(z[0]), 0.49)
        high = np.where(halted, close, np.maximum(open_, close) * (1.0 + up))
        low = np.where(halted, close, np.minimum(open_, close) * (1.0 - down))
        # Net issuance: at its earnings call a company whose cap ran above its target buys back
        # shares, one below issues (cap-neutral for the holder: no return effect). This, not a
        # predictable return, keeps the cross-section of caps stationary over any range.
        # The correction is faster for volatile names (rate ~ vol squared), so every name's cap
        # wanders as far around its target as a median-vol name's does.
        speed = (sig_base * math.sqrt(STEPS_PER_YEAR) / cfg.idio_vol_median) ** 2
        half_life_q = cfg.cap_reversion_half_life_years * 4.0 / np.maximum(speed, 1e-6)
        rate = np.minimum(1.0 - 0.5 ** (1.0 / half_life_q), 0.5)
        issue = np.where(called & trading, np.exp(-rate * st.dev), 1.0)
        st.dev += np.log(issue)
        shares = np.where(trading, st.shares * ratio * issue, st.shares)
        move = np.minimum(np.abs(R) / sig_day, 8.0)
        volume = (shares * st.turnover * cfg.regime_volume_multiplier[reg] * (0.5 + 0.5 * move)
                  * liq_mult * np.exp(0.3 * z[5] - 0.045))
        volume = np.where(listing, 5.0 * volume, volume)
        volume = np.where(halted, 0.0, np.maximum(np.round(volume), 1.0))
        adj = np.where(trading, st.adj * np.exp(R), st.adj)
        adj[lst] = start
        ret = np.where(trading, R, np.where(halted, 0.0, np.nan))

        f = path.f
        f["open"][k], f["high"][k], f["low"][k], f["close"][k] = open_, high, low, close
        f["adj"][k], f["volume"][k], f["shares"][k], f["ret"][k] = adj, volume, shares, ret
        f["dividend"][k], f["split"][k] = dividend, ratio
        path.occ[k] = np.where(active, occ, -1)
        path.halted[k] = halted
        path.phase[k] = st.phase
        path.surprise[k] = np.where(called, z[4], np.nan)
        for name, values in signals.items():
            path.sig[name][k] = values
        path.sig["alpha"][k] = st.alpha_pending
        path.regime[k] = reg
        path.global_regime[k] = self._world.global_regime[w]
        path.factors[k] = st.factor_pending if st.factor_pending is not None else 0.0

        # Carry the state to the next session.
        moved = trading | listing
        st.log_close = np.where(moved, np.log(close), st.log_close)
        st.adj = np.where(moved, adj, st.adj)
        st.shares = shares
        st.pending = np.where(moved | ~active, 0.0, st.pending)
        st.alpha_pending[:] = 0.0
        st.factor_pending = None
        st.halt_left = np.where(halted, st.halt_left - 1, st.halt_left)
        nxt = np.ones(n)
        high_price = moved & (close > cfg.split_above)
        if high_price.any():
            target = 0.6 * cfg.split_above
            choice = np.full(n, _SPLIT_RATIOS[-1])
            for rt in reversed(_SPLIT_RATIOS):
                choice = np.where(close / rt < target, rt, choice)
            nxt = np.where(high_price, choice, nxt)
        nxt = np.where(moved & (close < cfg.reverse_split_below), 0.1, nxt)
        st.split_next = np.where(delisting, 1.0, nxt)
        for s in np.flatnonzero(delisting):
            if st.open_event[s] >= 0 and st.events[st.open_event[s]][3] < 0:
                st.events[st.open_event[s]][3] = w
            st.occ[s] = -1
            st.phase[s] = 0
            st.open_event[s] = -1

    # ------------------------------------------------------------------ frames
    def prices(self, sessions: Sequence[date]) -> LoadResult:
        """Return ``prices_daily`` rows for ``sessions``.

        One row per listed instrument per session (halted ones included, with zero volume),
        sorted by session then instrument. ``close``/``open``/``high``/``low`` are raw traded
        prices; ``adjusted_close`` the point-in-time total-return price; ``shares_outstanding``
        the share count after the session's split. No quarantine: the generator only emits
        valid bars (``high >= max(open, close) >= min(open, close) >= low > 0``).

        Raises
        ------
        NotSessionError
            If a date is not a session.
        CalendarError
            If a date lies outside the calendar.
        """
        ordinals, days = self._ordinals(sessions)
        if not days:
            return LoadResult(empty_frame("prices_daily"))
        path = self._ensure(int(ordinals[-1]))
        occ = path.occ[ordinals]
        flat = (occ >= 0).ravel()
        occupant = occ.ravel()[flat]
        session_idx = np.repeat(np.arange(len(ordinals)), self.config.n_instruments)[flat]
        cols = {f: path.f[f][ordinals].ravel()[flat] for f in ("open", "high", "low", "close", "adj", "volume", "shares")}
        if not (
            np.all(cols["high"] >= np.maximum(cols["open"], cols["close"]))
            and np.all(np.minimum(cols["open"], cols["close"]) >= cols["low"])
            and np.all(cols["low"] > 0.0)
        ):  # pragma: no cover - guaranteed by construction; a failure is a bug here
            raise AssertionError("synthetic bars violate high >= max(open, close) >= min(open, close) >= low > 0")
        height = int(flat.sum())
        ids = pl.Series(self._universe.instrument_ids, dtype=pl.String)
        frame = pl.DataFrame(
            {
                "instrument_id": ids.gather(occupant),
                "session_date": pl.Series(np.array(days, dtype="datetime64[D]")).gather(session_idx),
                "market_id": pl.repeat(self.config.market_id, height, dtype=pl.String, eager=True),
                "open": cols["open"],
                "high": cols["high"],
                "low": cols["low"],
                "close": cols["close"],
                "adjusted_close": cols["adj"],
                "volume": cols["volume"],
                "currency": pl.repeat(self.config.currency, height, dtype=pl.String, eager=True),
                "source": pl.repeat("synthetic", height, dtype=pl.String, eager=True),
                "shares_outstanding": cols["shares"],
            }
        ).sort("session_date", "instrument_id")
        return LoadResult(_conform(frame, "prices_daily"))

    def corporate_actions(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Return ``corporate_actions`` rows (splits, cash dividends, delistings) for ``sessions``.

        A SPLIT's ``ratio`` is new shares per old share; a DIVIDEND's ``amount`` is cash per share
        held at the previous close (the ex-date is the session); a DELISTING is dated on the
        instrument's last session with a price and pays ``amount`` (that session's close) per
        share. Row ids: ``<instrument>-<yyyymmdd>-<type>``.
        """
        ordinals, days = self._ordinals(sessions)
        if not days:
            return empty_frame("corporate_actions")
        path = self._ensure(int(ordinals[-1]))
        u = self._universe
        rows: dict[str, list] = {c: [] for c in ("action_id", "instrument_id", "session_date", "action_type", "ratio", "amount")}

        def add(j: int, d: date, kind: str, ratio: float | None, amount: float | None) -> None:
            iid = u.instrument_ids[j]
            rows["action_id"].append(f"{iid}-{d:%Y%m%d}-{kind}")
            rows["instrument_id"].append(iid)
            rows["session_date"].append(d)
            rows["action_type"].append(kind)
            rows["ratio"].append(ratio)
            rows["amount"].append(amount)

        for k, d in zip(ordinals.tolist(), days, strict=True):
            occ = path.occ[k]
            for s in np.flatnonzero((occ >= 0) & (path.f["split"][k] != 1.0)):
                add(int(occ[s]), d, "SPLIT", float(path.f["split"][k, s]), None)
            for s in np.flatnonzero((occ >= 0) & (path.f["dividend"][k] > 0.0)):
                add(int(occ[s]), d, "DIVIDEND", None, float(path.f["dividend"][k, s]))
            for jj in self._delisting_at.get(k, ()):
                s = u.slot[jj]
                if occ[s] == jj:
                    add(int(jj), d, "DELISTING", None, float(path.f["close"][k, s]))
        if not rows["action_id"]:
            return empty_frame("corporate_actions")
        m = len(rows["action_id"])
        frame = pl.DataFrame(
            {**rows, "market_id": [self.config.market_id] * m, "currency": [self.config.currency] * m,
             "source": ["synthetic"] * m},
            schema_overrides={"ratio": pl.Float64, "amount": pl.Float64},
        )
        return _conform(frame, "corporate_actions").sort("session_date", "action_id")

    def reference(self) -> ReferenceData:
        """Return the market's issuers and instruments: every company that lists within the calendar.

        ``listing_date`` is its first session with a price, ``delisting_date`` its last one (null
        while it is listed at the calendar's end): reference data as a vendor's master file shows
        it today. Point-in-time engines learn of a delisting from ``corporate_actions`` on its
        date. ``shares_outstanding`` is the count at listing; ``prices_daily.shares_outstanding``
        carries it per session.
        """
        u, cfg = self._universe, self.config
        m = u.size
        sector_names = [self._sectors[s][0] for s in u.sector]
        issuers = pl.DataFrame(
            {
                "issuer_id": list(u.issuer_ids),
                "name": list(u.names),
                "sector": sector_names,
                "industry": list(u.industry),
                "country": [cfg.country] * m,
                "market_id": [cfg.market_id] * m,
            },
            schema=provider_schema("issuers"),
        )
        delisted = [self._ordinal_date(int(k)) if k >= 0 else None for k in u.delisting_k]
        instruments = pl.DataFrame(
            {
                "instrument_id": list(u.instrument_ids),
                "issuer_id": list(u.issuer_ids),
                "market_id": [cfg.market_id] * m,
                "ticker": list(u.tickers),
                "name": list(u.names),
                "asset_class": ["EQUITY"] * m,
                "currency": [cfg.currency] * m,
                "sector": sector_names,
                "industry": list(u.industry),
                "listing_date": [self._ordinal_date(int(k)) for k in u.listing_k],
                "delisting_date": delisted,
                "shares_outstanding": self._listing_shares().astype(float),
                "lot_size": [1] * m,
                "status": ["DELISTED" if d is not None else "ACTIVE" for d in delisted],
            },
            schema=provider_schema("instruments"),
        )
        return ReferenceData(issuers=issuers, instruments=instruments)


# ---------------------------------------------------------------------- helpers
def _group(keys: np.ndarray, values: np.ndarray | None = None) -> dict[int, np.ndarray]:
    values = np.arange(keys.shape[0]) if values is None else values
    out: dict[int, list[int]] = {}
    for key, v in zip(keys.tolist(), values.tolist(), strict=True):
        out.setdefault(int(key), []).append(int(v))
    return {key: np.array(v, dtype=np.int64) for key, v in out.items()}


def _masked_z(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cross-sectional rank score of ``x`` over ``mask``: uniform in [-sqrt(3), sqrt(3)], unit variance.

    Ranks, not z-scores: a planted drift proportional to the score is bounded, so a name with an
    extreme past return cannot feed its own momentum into a runaway.
    """
    out = np.zeros_like(x, dtype=float)
    m = int(mask.sum())
    if m < 2:
        return out
    ranks = np.argsort(np.argsort(x[mask], kind="stable"), kind="stable")
    out[mask] = ((ranks + 0.5) / m - 0.5) * math.sqrt(12.0)
    return out


def _as_date(value) -> date:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise CalendarError(f"session must be an ISO date (YYYY-MM-DD), was {value!r}") from None
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").astype(date)
    raise CalendarError(f"session must be a date, was {value!r} ({type(value).__name__})")


def _conform(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    schema = provider_schema(table)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])

