"""Tear sheets: a fixed-width text block for a terminal, and a PNG + HTML report.

Formatting is shared by both: fractions are shown as percentages with two decimals
(``0.1234`` → ``12.34%``), ratios with two decimals (``1.5`` → ``1.50``), turnover as a multiple
(``12.00x``), durations in sessions, and an undefined (NaN or infinite) value as ``n/a``.

The report is deterministic: no timestamps, and the PNG is written without the matplotlib
version in its metadata, so the same inputs give the same bytes with the same matplotlib.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from prometheus_lib.analytics.metrics import (
    HIT_RATE_BASIS_TRADES,
    PerformanceMetrics,
    _equity_array,
    drawdown_series,
)
from prometheus_lib.errors import DataValidationError

NOT_AVAILABLE = "n/a"
_WIDTH = 60
_VALUE_WIDTH = 16


def metric_rows(metrics: PerformanceMetrics) -> list[tuple[str, str, str]]:
    """Return the formatted metrics as ``(section, label, value)`` rows, in display order.

    Parameters
    ----------
    metrics
        The metrics to format.

    Returns
    -------
    list[tuple[str, str, str]]
        One row per metric; values are already formatted (``"12.34%"``, ``"1.50"``, ``"n/a"``).
    """
    m = metrics
    by_trade = m.hit_rate_basis == HIT_RATE_BASIS_TRADES
    return [
        ("Returns", "Cumulative return", _percent(m.cumulative_return)),
        ("Returns", "Annualised return (CAGR)", _percent(m.annualised_return)),
        ("Returns", "Annualised volatility", _percent(m.annualised_volatility)),
        ("Returns", "Sharpe ratio", _ratio(m.sharpe_ratio)),
        ("Returns", "Sortino ratio", _ratio(m.sortino_ratio)),
        ("Returns", "Calmar ratio", _ratio(m.calmar_ratio)),
        ("Drawdown", "Max drawdown", _percent(m.max_drawdown)),
        ("Drawdown", "Max drawdown duration", _sessions(m.max_drawdown_duration)),
        ("Drawdown", "Current drawdown duration", _sessions(m.current_drawdown_duration)),
        ("Benchmark", "Alpha (annualised)", _percent(m.alpha)),
        ("Benchmark", "Beta", _ratio(m.beta)),
        ("Benchmark", "Tracking error", _percent(m.tracking_error)),
        ("Benchmark", "Information ratio", _ratio(m.information_ratio)),
        ("Trading", f"Hit rate ({'per trade' if by_trade else 'daily'})", _percent(m.hit_rate)),
        ("Trading", f"Profit factor ({'per trade' if by_trade else 'daily'})", _ratio(m.profit_factor)),
        ("Trading", "Trades", str(m.trades) if by_trade else NOT_AVAILABLE),
        ("Trading", "Turnover (annualised)", _multiple(m.turnover)),
        ("Risk", "VaR 95% (1 day, historical)", _percent(m.var_95)),
        ("Risk", "VaR 99% (1 day, historical)", _percent(m.var_99)),
        ("Risk", "ES 95% (1 day, historical)", _percent(m.es_95)),
        ("Risk", "ES 99% (1 day, historical)", _percent(m.es_99)),
    ]


def format_tear_sheet(
    metrics: PerformanceMetrics,
    *,
    title: str,
    start: date | str,
    end: date | str,
    sessions: int,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Format the metrics as a fixed-width text block for a terminal.

    Parameters
    ----------
    metrics
        The metrics to show.
    title
        First line of the block.
    start, end
        First and last session of the period (dates are shown as ``YYYY-MM-DD``).
    sessions
        Number of sessions in the period.
    extra
        Further ``label: value`` rows, shown as given in a final "Details" section.

    Returns
    -------
    str
        The block, lines joined by ``\\n``, ending with a newline.
    """
    rule = "=" * _WIDTH
    lines = [rule, title, f"{_day(start)} to {_day(end)}, {sessions} sessions", rule]
    rows = metric_rows(metrics) + [("Details", k, str(v)) for k, v in (extra or {}).items()]
    section = None
    for name, label, value in rows:
        if name != section:
            section = name
            lines.append(f"-- {name} ".ljust(_WIDTH, "-"))
        lines.append(f"  {label}".ljust(_WIDTH - _VALUE_WIDTH) + value.rjust(_VALUE_WIDTH))
    lines.append(rule)
    return "\n".join(lines) + "\n"


def write_report(
    path: Path,
    *,
    dates: Sequence[date],
    equity: np.ndarray,
    benchmark_equity: np.ndarray | None,
    metrics: PerformanceMetrics,
    title: str,
) -> list[Path]:
    """Write a PNG chart and an HTML report of an equity curve and its metrics.

    The PNG has two panels: the equity curve (with the benchmark rebased to the curve's first
    value, if given) and the drawdown in percent. The HTML embeds the PNG as base64 and adds
    the metrics table. Drawing uses matplotlib's Agg canvas directly (no ``pyplot``), so the
    function neither needs a display nor changes the process-wide backend.

    Parameters
    ----------
    path
        Base path of the report: the PNG is written to ``path.with_suffix(".png")`` and the HTML
        to ``path.with_suffix(".html")``; missing parent folders are created. Each file is
        written to a temporary name and renamed over the old one, so it is never half-written.
    dates
        One date per session, aligned with ``equity``.
    equity
        The portfolio's equity, one finite value ``> 0`` per session.
    benchmark_equity
        The benchmark's equity (or price) per session, aligned with ``equity``, or ``None``.
    metrics
        The metrics to tabulate, as returned by ``compute_metrics``.
    title
        Title of the chart and of the HTML page.

    Returns
    -------
    list[pathlib.Path]
        The written files: ``[png_path, html_path]``.

    Raises
    ------
    InvalidValueError
        If an equity or benchmark value is NaN, infinite or ``<= 0``; the message names its index.
    DataValidationError
        If ``dates``, ``equity`` and ``benchmark_equity`` differ in length.
    """
    e = _equity_array(equity)
    days = list(dates)
    if len(days) != e.size:
        raise DataValidationError(f"dates must have one date per equity value ({e.size}), had {len(days)}")
    bench = None
    if benchmark_equity is not None:
        bench = _equity_array(benchmark_equity, "benchmark_equity")
        if bench.size != e.size:
            raise DataValidationError(
                f"benchmark_equity must have one value per equity value ({e.size}), had {bench.size}"
            )

    png = _render_png(days, e, bench, title)
    path = Path(path)
    png_path, html_path = path.with_suffix(".png"), path.with_suffix(".html")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(png_path, png)
    _write_atomic(html_path, _render_html(days, metrics, title, png).encode("utf-8"))
    return [png_path, html_path]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, flushed, renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _render_png(days: list[date], e: np.ndarray, bench: np.ndarray | None, title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(days, e, color="tab:blue", linewidth=1.2, label="Portfolio")
    if bench is not None and bench.size:
        top.plot(days, bench / bench[0] * e[0], color="tab:gray", linewidth=1.0, linestyle="--",
                 label="Benchmark (rebased)")
    top.set_title(title)
    top.set_ylabel("Equity")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left")
    dd = drawdown_series(e) * 100.0
    bottom.fill_between(days, dd, 0.0, color="tab:red", alpha=0.35, linewidth=0)
    bottom.plot(days, dd, color="tab:red", linewidth=0.8)
    bottom.set_ylabel("Drawdown (%)")
    bottom.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    # No "Software" chunk: keeps the bytes independent of the matplotlib version string.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _render_html(days: list[date], metrics: PerformanceMetrics, title: str, png: bytes) -> str:
    t = html.escape(title)
    period = f"{_day(days[0])} to {_day(days[-1])}, " if days else ""
    rows = []
    section = None
    for name, label, value in metric_rows(metrics):
        if name != section:
            section = name
            rows.append(f'<tr class="section"><th colspan="2">{html.escape(name)}</th></tr>')
        rows.append(f"<tr><td>{html.escape(label)}</td><td class=\"value\">{html.escape(value)}</td></tr>")
    image = base64.b64encode(png).decode("ascii")
    table = "\n".join(rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{t}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 0.2em 1em; text-align: left; }}
td.value {{ text-align: right; font-family: monospace; }}
tr.section th {{ border-bottom: 1px solid #999; padding-top: 0.8em; }}
</style>
</head>
<body>
<h1>{t}</h1>
<p>{html.escape(period)}{metrics.sessions} sessions</p>
<img alt="Equity and drawdown" src="data:image/png;base64,{image}">
<table>
{table}
</table>
</body>
</html>
"""


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


def _percent(value: float) -> str:
    return f"{value + 0.0:.2%}" if _finite(value) else NOT_AVAILABLE


def _ratio(value: float) -> str:
    return f"{value + 0.0:.2f}" if _finite(value) else NOT_AVAILABLE


def _multiple(value: float) -> str:
    return f"{value + 0.0:.2f}x" if _finite(value) else NOT_AVAILABLE


def _sessions(value: int) -> str:
    return f"{value} sessions"


def _day(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
