"""A deterministic synthetic equity world: several regions' markets, their prices, reference
data, corporate actions, news, filings, calls and macro releases, and the ground truth behind
them.

The synthetic world is the platform's default data source and the test bed every engine is
scored against. Modules, one hop each:

* ``config``   — ``SyntheticMarketConfig``: every parameter, validated and frozen.
* ``world``    — the global and regional regime chains and market factors (weekday grid).
* ``universe`` — slots, their occupants (IPOs, delistings) and static attributes (Zipf caps).
* ``market``   — the price path: factor model, GARCH-t, planted signals, fragility events,
  halts, splits and dividends; bars, corporate actions, reference data.
* ``text``     — news, filings, earnings calls, macro releases.
* ``truth``    — the ground truth (regimes, loadings, signals, events, oracle ICs) and its
  Parquet sidecar; engines never read it (see the module).

Timing (2-core dev machine): see ``bench/synthetic_facts.py``.
"""

from __future__ import annotations

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.synthetic.config import REGIMES, STYLE_FACTORS, SyntheticMarketConfig
from prometheus_lib.data.synthetic.text import NEGATIVE_WORDS, NEUTRAL_WORDS, POSITIVE_WORDS, TextFeeds
from prometheus_lib.data.synthetic.truth import TruthViews, read_truth, record_truth
from prometheus_lib.data.synthetic.universe import SECTORS

__all__ = [
    "NEGATIVE_WORDS",
    "NEUTRAL_WORDS",
    "POSITIVE_WORDS",
    "REGIMES",
    "SECTORS",
    "STYLE_FACTORS",
    "SyntheticMarket",
    "SyntheticMarketConfig",
    "read_truth",
    "record_truth",
]


class SyntheticMarket(TruthViews, TextFeeds):
    """A deterministic synthetic equity market implementing both provider protocols.

    Parameters
    ----------
    config
        The market's parameters (defaults: ``SyntheticMarketConfig()``).
    calendar
        The exchange calendar whose sessions the market trades on (defaults to
        ``TradingCalendar(config.calendar_code)``); its code must equal ``config.calendar_code``.

    Raises
    ------
    ConfigError
        If the calendar's code differs from ``config.calendar_code`` or ``history_start`` lies
        outside the calendar.

    Notes
    -----
    Sessions before the first session on or after ``history_start`` are outside the world: they
    yield no rows. Asking for a date that is not a session raises ``NotSessionError``.
    """

    source = "synthetic"

    def __init__(self, config: SyntheticMarketConfig | None = None, calendar: TradingCalendar | None = None) -> None:
        super().__init__(config, calendar)
        self._text_init()

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"SyntheticMarket(market_id={cfg.market_id!r}, region={cfg.region!r}, seed={cfg.seed}, "
            f"n_instruments={cfg.n_instruments}, history_start={cfg.history_start})"
        )

    def record_truth(self, sessions, root):
        """Write this market's ground truth for ``sessions`` under ``root`` (see ``truth.record_truth``)."""
        return record_truth(self, sessions, root)
