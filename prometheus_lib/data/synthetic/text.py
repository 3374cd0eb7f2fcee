"""Text and event feeds of the synthetic market: news, filings, earnings calls, macro releases.

A mixin over ``PriceWorld``: every feed is generated per session from its own random stream and
reads the simulated path (the occupants listed at the session, their closes, and the planted
truths: an article's tone follows a latent sentiment linked to the next sessions' returns; an
earnings call reports the surprise the price path reacts to).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import polars as pl

from prometheus_lib.data.providers import empty_frame
from prometheus_lib.data.synthetic.market import PriceWorld, _conform

__all__ = ["NEGATIVE_WORDS", "NEUTRAL_WORDS", "POSITIVE_WORDS", "TextFeeds"]

# Tone vocabulary of generated text. Names, templates and industries never contain these words,
# so counting them recovers (a noisy view of) an article's latent sentiment.
POSITIVE_WORDS = (
    "strong", "robust", "upbeat", "bullish", "stellar", "encouraging",
    "impressive", "favorable", "resilient", "healthy", "buoyant", "solid",
)
NEGATIVE_WORDS = (
    "weak", "disappointing", "bearish", "gloomy", "poor", "troubling",
    "sluggish", "dismal", "worrying", "shaky", "bleak", "fragile",
)
NEUTRAL_WORDS = ("mixed", "routine", "scheduled", "standard", "ordinary", "customary", "regular", "typical")

_HEADLINES = (
    "{name} ({ticker}) reports {w} quarterly trends",
    "Analysts flag {w} outlook for {name}",
    "{ticker}: {w} demand signals at {name}",
    "{name} shares in focus after {w} update",
    "{w} order book reported at {name}",
    "{name} draws {w} reviews from industry watchers",
)
_SENTENCES = (
    "Management described the operating environment as {w}.",
    "Channel checks point to {w} demand across the {industry} segment.",
    "One analyst called the pricing backdrop {w}.",
    "Supplier commentary on {name} was {w}.",
    "Investors described recent guidance from {ticker} as {w}.",
    "Trading desks noted {w} flows in {ticker} shares.",
    "Peers in {industry} reported {w} conditions this week.",
)
_CALL_SENTENCES = (
    "Our chief executive described the quarter as {w}.",
    "Demand in {industry} has been {w} over the last few months.",
    "We see the order pipeline as {w} heading into next quarter.",
    "Margins were {w} relative to our internal plan.",
    "Customer conversations have been {w} across regions.",
)
_N_TONE_SLOTS = 6  # one headline slot plus up to five body sentences
_NEUTRAL_SLOT_SHARE = 0.25
_TONE_SHARPNESS = 2.0  # P(positive word) = logistic(sharpness * sentiment)

_EIGHT_K_ITEMS = (
    ("Item 1.01", "Entry into a Material Definitive Agreement"),
    ("Item 2.01", "Completion of Acquisition or Disposition of Assets"),
    ("Item 5.02", "Departure or Appointment of Directors or Officers"),
    ("Item 7.01", "Regulation FD Disclosure"),
    ("Item 8.01", "Other Events"),
)
_FOMC_MONTHS = (1, 3, 5, 6, 7, 9, 11, 12)

# Stream ids of the per-session random generators: never reuse one for a different purpose.
_STREAM_NEWS = 2
_STREAM_FILINGS = 3
_STREAM_EARNINGS = 4
_STREAM_MACRO = 5


class TextFeeds(PriceWorld):
    """News, filings, earnings calls and macro releases over a ``PriceWorld``."""

    def _text_init(self) -> None:
        self._close_cache: dict[date, int] = {}
        self._macro_months: list[dict[str, tuple[date, float, float, float] | None]] = []
        self._macro_state: dict[str, float] = {}

    def _close_us(self, d: date) -> int:
        us = self._close_cache.get(d)
        if us is None:
            us = int(self.calendar.session_close(d).timestamp()) * 1_000_000
            self._close_cache[d] = us
        return us

    def _forward_z(self, first: int) -> np.ndarray:
        """Cross-sectional z-score of each slot's log total return over sessions ``first..first+H-1``."""
        path = self._ensure(first + self.config.news_forward_sessions)
        ret = path.f["ret"][first : first + self.config.news_forward_sessions]
        fwd = np.nansum(ret, axis=0)
        listed = path.occ[first - 1 if first > 0 else 0] >= 0
        out = np.zeros_like(fwd)
        if listed.sum() >= 2:
            vals = fwd[listed]
            sd = float(vals.std())
            if sd > 0:
                out[listed] = (vals - vals.mean()) / sd
        return out

    def _tone_words(self, sentiment: np.ndarray, u_neutral: np.ndarray, u_sign: np.ndarray, pick: np.ndarray) -> list[list[str]]:
        """Words for each text's tone slots: positive more often the higher its sentiment."""
        p_pos = 1.0 / (1.0 + np.exp(-_TONE_SHARPNESS * sentiment))[:, None]
        positive = u_sign < p_pos
        neutral = u_neutral < _NEUTRAL_SLOT_SHARE
        out = []
        for i in range(sentiment.shape[0]):
            words = []
            for j in range(u_neutral.shape[1]):
                if neutral[i, j]:
                    words.append(NEUTRAL_WORDS[pick[i, j] % len(NEUTRAL_WORDS)])
                elif positive[i, j]:
                    words.append(POSITIVE_WORDS[pick[i, j] % len(POSITIVE_WORDS)])
                else:
                    words.append(NEGATIVE_WORDS[pick[i, j] % len(NEGATIVE_WORDS)])
            out.append(words)
        return out

    # ------------------------------------------------------------------ news
    def _news_rows(self, sessions: Sequence[date]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        cfg, u = self.config, self._universe
        ordinals, days = self._ordinals(sessions)
        art: dict[str, list[Any]] = {c: [] for c in ("article_id", "session_date", "published_at", "headline", "body", "sentiment", "instrument_id")}
        links: dict[str, list[Any]] = {c: [] for c in ("article_id", "instrument_id", "session_date", "relevance")}
        if not days:
            return art, links
        path = self._ensure(int(ordinals[-1]) + cfg.news_forward_sessions)
        link = cfg.news_sentiment_link
        resid = math.sqrt(max(0.0, 1.0 - link * link))
        n = cfg.n_instruments
        for k, d in zip(ordinals.tolist(), days, strict=True):
            rng = self._rng(_STREAM_NEWS, k)
            counts = rng.poisson(cfg.news_rate, size=n)
            occ = path.occ[k]
            owner = np.repeat(np.arange(n), counts)
            m = owner.shape[0]
            noise = rng.standard_normal(m)
            u_neutral = rng.random((m, _N_TONE_SLOTS))
            u_sign = rng.random((m, _N_TONE_SLOTS))
            pick = rng.integers(0, 1 << 30, size=(m, _N_TONE_SLOTS + 8))
            minutes_before_close = rng.uniform(1.0, 480.0, size=m)
            u_peer = rng.random(m)
            if m == 0:
                continue
            z = self._forward_z(k + 1)
            sentiment = link * z[owner] + resid * noise
            words = self._tone_words(sentiment, u_neutral, u_sign, pick[:, :_N_TONE_SLOTS])
            close_us = self._close_us(d)
            stamp = d.strftime("%Y%m%d")
            sector_of = {s: u.sector[occ[s]] for s in np.flatnonzero(occ >= 0).tolist()}
            for a in range(m):
                s = int(owner[a])
                if occ[s] < 0:
                    continue
                i = int(occ[s])
                article_id = f"{cfg.id_prefix}-NEWS-{stamp}-{a + 1:05d}"
                fill = {"name": u.names[i], "ticker": u.tickers[i], "industry": u.industry[i]}
                p = pick[a, _N_TONE_SLOTS:]
                headline = _HEADLINES[p[0] % len(_HEADLINES)].format(w=words[a][0], **fill)
                headline = headline[0].upper() + headline[1:]
                n_body = 3 + int(p[1] % 3)
                order = _choose(p[2], len(_SENTENCES), n_body)
                body = " ".join(_SENTENCES[x].format(w=words[a][1 + jj], **fill) for jj, x in enumerate(order))
                body += " SynWire will update this story as more information becomes available."
                art["article_id"].append(article_id)
                art["session_date"].append(d)
                art["published_at"].append(close_us - int(minutes_before_close[a] * 60_000_000))
                art["headline"].append(headline)
                art["body"].append(body)
                art["sentiment"].append(float(sentiment[a]))
                art["instrument_id"].append(u.instrument_ids[i])
                links["article_id"].append(article_id)
                links["instrument_id"].append(u.instrument_ids[i])
                links["session_date"].append(d)
                links["relevance"].append(1.0)
                if u_peer[a] < 0.2:
                    peers = [x for x, sec in sector_of.items() if sec == u.sector[i]]
                    peer = peers[int(p[3] % len(peers))]
                    if peer != s:
                        links["article_id"].append(article_id)
                        links["instrument_id"].append(u.instrument_ids[int(occ[peer])])
                        links["session_date"].append(d)
                        links["relevance"].append(0.3)
        return art, links

    def news(self, sessions: Sequence[date]) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Return ``(news_articles, news_links)`` for ``sessions``.

        Each listed instrument gets a Poisson(``news_rate``) number of articles per session,
        published between 08:00 and the close (exchange time), so known at that session. The
        text's tone follows a latent sentiment
        ``s = link * z(forward return) + sqrt(1 - link**2) * noise``, where ``z`` is the
        cross-sectional z-score of the next ``news_forward_sessions`` sessions' log return; the
        sentiment itself is never emitted (it is ground truth). Each article links to its
        instrument (relevance 1.0) and sometimes to a listed same-sector peer (relevance 0.3).

        Raises
        ------
        NotSessionError
            If a date is not a session.
        """
        cfg = self.config
        art, links = self._news_rows(sessions)
        if not art["article_id"]:
            return empty_frame("news_articles"), empty_frame("news_links")
        n_art = len(art["article_id"])
        articles = pl.DataFrame(
            {
                "article_id": art["article_id"],
                "session_date": art["session_date"],
                "market_id": [cfg.market_id] * n_art,
                "published_at": _utc_from_us(art["published_at"]),
                "source": ["SynWire"] * n_art,
                "headline": art["headline"],
                "body": art["body"],
                "language": ["en"] * n_art,
            }
        )
        link_frame = pl.DataFrame(
            {
                "article_id": links["article_id"],
                "instrument_id": links["instrument_id"],
                "session_date": links["session_date"],
                "market_id": [cfg.market_id] * len(links["article_id"]),
                "relevance": links["relevance"],
            }
        )
        return _conform(articles, "news_articles"), _conform(link_frame, "news_links")

    # ------------------------------------------------------------------ filings
    def filings(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Return ``filings`` rows for ``sessions``.

        Every issuer files a 10-Q after each of its fiscal Q1-Q3 calls and a 10-K after the Q4
        call (a few days to three weeks later, per issuer), plus occasional 8-Ks
        (``filing_8k_rate`` per issuer per session). Filings are stamped before the close of
        their session.

        Raises
        ------
        NotSessionError
            If a date is not a session.
        """
        cfg, u = self.config, self._universe
        ordinals, days = self._ordinals(sessions)
        rows: dict[str, list[Any]] = {
            c: [] for c in ("filing_id", "issuer_id", "instrument_id", "session_date", "filed_at", "filing_type", "title", "body")
        }
        n = cfg.n_instruments
        if days:
            path = self._ensure(int(ordinals[-1]))
        for k, d in zip(ordinals.tolist(), days, strict=True):
            rng = self._rng(_STREAM_FILINGS, k)
            u_8k = rng.random(n)
            item = rng.integers(0, len(_EIGHT_K_ITEMS), size=n)
            minutes = rng.uniform(10.0, 360.0, size=(2, n))
            growth = rng.normal(0.05, 0.08, size=n)
            margin = rng.normal(0.12, 0.05, size=n)
            occ = path.occ[k]
            close_us = self._close_us(d)
            stamp = d.strftime("%Y%m%d")
            q = (d.month - 1) // 3 + 1
            period = _previous_quarter(d.year, q)
            for i in self._scheduled(d, 1).tolist():
                s = int(u.slot[i])
                if occ[s] != i:
                    continue
                annual = period.endswith("Q4")
                ftype = "10-K" if annual else "10-Q"
                mcap = path.f["shares"][k, s] * path.f["close"][k, s]
                revenue = mcap * 0.4 / (1 if annual else 4) / 1e6
                kind = "annual report" if annual else "quarterly report"
                rows["filing_id"].append(f"{u.issuer_ids[i].replace('-ISS-', '-FIL-')}-{stamp}-{ftype}")
                rows["issuer_id"].append(u.issuer_ids[i])
                rows["instrument_id"].append(u.instrument_ids[i])
                rows["session_date"].append(d)
                rows["filed_at"].append(close_us - int(minutes[0, s] * 60_000_000))
                rows["filing_type"].append(ftype)
                rows["title"].append(f"{u.names[i]} {kind} on Form {ftype} for fiscal period {period}")
                rows["body"].append(
                    f"{u.names[i]} ({u.tickers[i]}), {u.industry[i]}, filed its {kind} on Form {ftype} "
                    f"for fiscal period {period}. Revenue was ${revenue:,.1f} million, "
                    f"{growth[s]:+.1%} year over year, with an operating margin of {margin[s]:.1%}. "
                    "Risk factors are substantially unchanged from the prior filing."
                )
            for s in np.flatnonzero((u_8k < cfg.filing_8k_rate) & (occ >= 0)).tolist():
                i = int(occ[s])
                code, title = _EIGHT_K_ITEMS[int(item[s])]
                rows["filing_id"].append(f"{u.issuer_ids[i].replace('-ISS-', '-FIL-')}-{stamp}-8-K")
                rows["issuer_id"].append(u.issuer_ids[i])
                rows["instrument_id"].append(u.instrument_ids[i])
                rows["session_date"].append(d)
                rows["filed_at"].append(close_us - int(minutes[1, s] * 60_000_000))
                rows["filing_type"].append("8-K")
                rows["title"].append(f"{u.names[i]} current report on Form 8-K: {title}")
                rows["body"].append(f"{code}. {title}. {u.names[i]} ({u.tickers[i]}) reports a {title.lower()} event.")
        if not rows["filing_id"]:
            return empty_frame("filings")
        n_rows = len(rows["filing_id"])
        frame = pl.DataFrame(
            {**rows, "market_id": [cfg.market_id] * n_rows, "filed_at": _utc_from_us(rows["filed_at"])}
        )
        return _conform(frame, "filings")

    # ------------------------------------------------------------------ earnings calls
    def earnings_calls(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Return ``earnings_calls`` rows for ``sessions``.

        Every listed instrument holds one call per calendar quarter (15-45 days into the
        quarter, fixed per instrument), one hour before the open, reporting the previous
        quarter (``fiscal_period`` like ``"2023Q2"``). ``eps_consensus`` follows the previous
        close and the instrument's earnings yield; ``eps_actual - eps_consensus`` is the planted
        surprise ``s`` (ground truth) scaled by the size of the consensus: the call session
        moves by ``announcement_vol * s`` daily vols and the price drifts in the surprise's
        direction for ``pead_drift_sessions`` (post-earnings-announcement drift).

        Raises
        ------
        NotSessionError
            If a date is not a session.
        """
        cfg, u = self.config, self._universe
        ordinals, days = self._ordinals(sessions)
        if not days:
            return empty_frame("earnings_calls")
        path = self._ensure(int(ordinals[-1]))
        rows: dict[str, list[Any]] = {
            c: [] for c in ("call_id", "issuer_id", "instrument_id", "session_date", "call_at", "fiscal_period",
                            "eps_actual", "eps_consensus", "transcript")
        }
        n = cfg.n_instruments
        for k, d in zip(ordinals.tolist(), days, strict=True):
            rng = self._rng(_STREAM_EARNINGS, k)
            noise = rng.standard_normal(n)
            u_neutral = rng.random((n, 4))
            u_sign = rng.random((n, 4))
            pick = rng.integers(0, 1 << 30, size=(n, 6))
            surprise = path.surprise[k]
            slots = [s for s in np.flatnonzero(~np.isnan(surprise)).tolist()]
            if not slots:
                continue
            q = (d.month - 1) // 3 + 1
            period = _previous_quarter(d.year, q)
            call_at = int(self.calendar.session_open(d).timestamp()) * 1_000_000 - 3_600_000_000
            idx = np.array(slots)
            words = self._tone_words(surprise[idx].astype(float), u_neutral[idx], u_sign[idx], pick[idx, :4])
            occ = path.occ[k]
            for jj, s in enumerate(slots):
                i = int(occ[s])
                first_session = u.listing_k[i] == k
                ref_price = path.f["close"][k - 1, s] if (k > 0 and not first_session) else float(u.start_price[i])
                consensus = round(float(u.earnings_yield[i] * ref_price / 4.0 + 0.01 * noise[s]), 2)
                actual = round(consensus + (0.08 * abs(consensus) + 0.02) * float(surprise[s]), 2)
                fill = {"name": u.names[i], "ticker": u.tickers[i], "industry": u.industry[i]}
                order = _choose(pick[s, 4], len(_CALL_SENTENCES), 3)
                remarks = " ".join(_CALL_SENTENCES[x].format(w=words[jj][1 + m], **fill) for m, x in enumerate(order))
                transcript = (
                    f"Operator: Good morning and welcome to the {u.names[i]} {period} earnings call. "
                    f"CFO: We reported diluted EPS of ${actual:.2f} against a consensus of ${consensus:.2f}. "
                    f"CEO: Overall we would call the quarter {words[jj][0]}. {remarks} "
                    "Operator: This concludes today's call."
                )
                rows["call_id"].append(f"{cfg.id_prefix}-CALL-{u.instrument_ids[i]}-{period}")
                rows["issuer_id"].append(u.issuer_ids[i])
                rows["instrument_id"].append(u.instrument_ids[i])
                rows["session_date"].append(d)
                rows["call_at"].append(call_at)
                rows["fiscal_period"].append(period)
                rows["eps_actual"].append(actual)
                rows["eps_consensus"].append(consensus)
                rows["transcript"].append(transcript)
        if not rows["call_id"]:
            return empty_frame("earnings_calls")
        n_rows = len(rows["call_id"])
        frame = pl.DataFrame({**rows, "market_id": [cfg.market_id] * n_rows, "call_at": _utc_from_us(rows["call_at"])})
        return _conform(frame, "earnings_calls")

    # ------------------------------------------------------------------ macro
    def _macro_release_dates(self, year: int, month: int, m: int) -> dict[str, date | None]:
        jitter = int(self._rng(_STREAM_MACRO, 0, m).integers(0, 5))
        first = date(year, month, 1)
        first_friday = first + timedelta(days=(4 - first.weekday()) % 7)
        out: dict[str, date | None] = {
            "NFP": self._session_on_or_after(first_friday),
            "CPI": self._session_on_or_after(date(year, month, 10 + jitter)),
            "FOMC": None,
        }
        if month in _FOMC_MONTHS:
            first_wed = first + timedelta(days=(2 - first.weekday()) % 7)
            out["FOMC"] = self._session_on_or_after(first_wed + timedelta(days=14))
        return out

    def _macro_month(self, m: int) -> dict[str, tuple[date, float, float, float] | None]:
        """Releases of world month ``m`` (0 = history_start's month), simulated in order and cached."""
        start = self.config.history_start
        while len(self._macro_months) <= m:
            j = len(self._macro_months)
            year, month = divmod(start.year * 12 + start.month - 1 + j, 12)
            month += 1
            dates = self._macro_release_dates(year, month, j)
            state = self._macro_state or {"CPI": 2.0, "NFP": 180.0, "FOMC": 0.25}
            month_out: dict[str, tuple[date, float, float, float] | None] = {}
            for code, stream in (("CPI", 1), ("NFP", 2), ("FOMC", 3)):
                d = dates[code]
                rng = self._rng(_STREAM_MACRO, stream, j)
                e = rng.standard_normal(2)
                u_draw = rng.random(2)
                if d is None or d < self._world_sessions[0].astype(date):
                    month_out[code] = None
                    continue
                k = int(np.searchsorted(self._world_sessions, np.datetime64(d, "D")))
                path = self._ensure(k)
                regime_now = int(path.regime[k])
                regime_before = int(path.regime[k - 1]) if k > 0 else 0
                prev = state[code]
                if code == "CPI":
                    expected = 2.5 + 0.93 * (prev - 2.5)
                    actual = round(expected + 0.25 * e[0], 1)
                    consensus = round(expected + 0.1 * e[1], 1)
                elif code == "NFP":
                    means = (190.0, 90.0, -250.0)
                    actual = round(means[regime_now] + 0.5 * (prev - 150.0) + 60.0 * e[0], 0)
                    consensus = round(means[regime_before] + 0.5 * (prev - 150.0) + 25.0 * e[1], 0)
                else:
                    hike, hold = ((0.35, 0.60), (0.10, 0.60), (0.0, 0.40))[regime_before]
                    cut = 0.5 if regime_before == 2 else 0.25
                    step = 0.25 if u_draw[0] < hike else (0.0 if u_draw[0] < hike + hold else -cut)
                    actual = round(max(0.25, prev + step), 2)
                    consensus = actual if u_draw[1] < 0.85 else prev
                month_out[code] = (d, float(actual), float(consensus), float(prev))
                state[code] = float(actual)
            self._macro_state = state
            self._macro_months.append(month_out)
        return self._macro_months[m]

    def macro_events(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Return ``macro_events`` rows for ``sessions``.

        Monthly CPI (year-over-year %, about the 10th-14th, 08:30 exchange time), nonfarm
        payrolls (thousands, first Friday, 08:30) and eight policy-rate decisions a year (upper
        bound of the target rate %, third Wednesday of the meeting month, 14:00). Payrolls
        weaken and rates are cut in the region's stressed regimes. Releases falling on a holiday
        move to the next session.

        Raises
        ------
        NotSessionError
            If a date is not a session.
        """
        cfg = self.config
        _, days = self._ordinals(sessions)
        names = {
            "CPI": ("Consumer Price Index (YoY %)", time(8, 30)),
            "NFP": ("Nonfarm Payrolls (thousands)", time(8, 30)),
            "FOMC": ("FOMC Rate Decision (upper bound %)", time(14, 0)),
        }
        rows: dict[str, list[Any]] = {c: [] for c in ("event_id", "session_date", "event_at", "event_type", "name",
                                                       "actual", "consensus", "previous")}
        start = cfg.history_start
        with self._lock:
            for d in days:
                month_index = (d.year - start.year) * 12 + d.month - start.month
                for code, release in self._macro_month(month_index).items():
                    if release is None or release[0] != d:
                        continue
                    _, actual, consensus, previous = release
                    name, at = names[code]
                    event_at = datetime.combine(d, at, tzinfo=self.calendar.timezone)
                    rows["event_id"].append(f"{cfg.id_prefix}-MACRO-{code}-{d.year:04d}{d.month:02d}")
                    rows["session_date"].append(d)
                    rows["event_at"].append(int(event_at.timestamp()) * 1_000_000)
                    rows["event_type"].append(code)
                    rows["name"].append(name)
                    rows["actual"].append(actual)
                    rows["consensus"].append(consensus)
                    rows["previous"].append(previous)
        if not rows["event_id"]:
            return empty_frame("macro_events")
        n_rows = len(rows["event_id"])
        frame = pl.DataFrame(
            {
                **rows,
                "market_id": [cfg.market_id] * n_rows,
                "region": [cfg.country] * n_rows,
                "event_at": _utc_from_us(rows["event_at"]),
            }
        )
        return _conform(frame, "macro_events").sort("event_at", "event_id")


def _choose(seed_int: int, n: int, k: int) -> list[int]:
    """``k`` distinct indices below ``n`` chosen by an integer (deterministic, no generator)."""
    pool = list(range(n))
    out = []
    s = int(seed_int)
    for _ in range(min(k, n)):
        s, r = divmod(s, len(pool))
        out.append(pool.pop(r))
        s = s * 7919 + 104_729
    return out


def _previous_quarter(year: int, quarter: int) -> str:
    return f"{year - 1}Q4" if quarter == 1 else f"{year}Q{quarter - 1}"


def _utc_from_us(values: list[int]) -> pl.Series:
    return pl.Series(values, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
