"""Specification of the text tear sheet and the PNG + HTML report.

The tear sheet is checked line by line against metrics chosen so that every formatted value is
known in advance; the report is checked by its structure (PNG signature, the HTML's title, the
embedded image decoding to the PNG written next to it, the metrics table), never by its pixels.
"""

from __future__ import annotations

import base64
import math
import re
from datetime import date, timedelta

import numpy as np
import pytest

from prometheus_lib.analytics import PerformanceMetrics, compute_metrics, format_tear_sheet, write_report
from prometheus_lib.errors import DataValidationError, InvalidValueError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = math.nan


def known_metrics(**changes: object) -> PerformanceMetrics:
    """Metrics with round values, so that each formatted string is known."""
    values: dict[str, object] = dict(
        sessions=253, periods=252, periods_per_year=252, risk_free_rate=0.0,
        cumulative_return=0.1234, annualised_return=0.1234, annualised_volatility=0.2,
        sharpe_ratio=1.5, sortino_ratio=2.25, calmar_ratio=0.6170,
        max_drawdown=-0.2, max_drawdown_duration=37, current_drawdown_duration=4,
        alpha=0.031, beta=0.85, tracking_error=0.05, information_ratio=0.62,
        hit_rate=0.5432, hit_rate_basis="trades", profit_factor=1.456, trades=120,
        turnover=12.0, var_95=0.0213, var_99=0.0345, es_95=0.0301, es_99=0.0412,
    )
    values.update(changes)
    return PerformanceMetrics(**values)  # type: ignore[arg-type]


EXPECTED_ROWS = [
    ("Cumulative return", "12.34%"),
    ("Annualised return (CAGR)", "12.34%"),
    ("Annualised volatility", "20.00%"),
    ("Sharpe ratio", "1.50"),
    ("Sortino ratio", "2.25"),
    ("Calmar ratio", "0.62"),
    ("Max drawdown", "-20.00%"),
    ("Max drawdown duration", "37 sessions"),
    ("Current drawdown duration", "4 sessions"),
    ("Alpha (annualised)", "3.10%"),
    ("Beta", "0.85"),
    ("Tracking error", "5.00%"),
    ("Information ratio", "0.62"),
    ("Hit rate (per trade)", "54.32%"),
    ("Profit factor (per trade)", "1.46"),
    ("Trades", "120"),
    ("Turnover (annualised)", "12.00x"),
    ("VaR 95% (1 day, historical)", "2.13%"),
    ("VaR 99% (1 day, historical)", "3.45%"),
    ("ES 95% (1 day, historical)", "3.01%"),
    ("ES 99% (1 day, historical)", "4.12%"),
]


def line_for(text: str, label: str) -> str:
    """The one row whose label (the text before the column gap) is exactly ``label``."""
    [line] = [line for line in text.splitlines() if re.split(r"\s{2,}", line.strip())[0] == label]
    return line


def curve(n: int = 60) -> tuple[list[date], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    equity = 100.0 * np.cumprod(1.0 + rng.normal(0.0005, 0.01, n))
    benchmark = 4000.0 * np.cumprod(1.0 + rng.normal(0.0003, 0.009, n))
    dates = [date(2024, 1, 1) + timedelta(days=i) for i in range(n)]
    return dates, equity, benchmark


# ---------------------------------------------------------------- text tear sheet


@pytest.mark.parametrize(("label", "value"), EXPECTED_ROWS)
def test_format_tear_sheet_with_known_metrics_shows_label_and_formatted_value(label: str, value: str) -> None:
    # Act
    text = format_tear_sheet(known_metrics(), title="Momentum US", start=date(2024, 1, 2),
                             end=date(2024, 12, 31), sessions=252)

    # Assert
    line = line_for(text, label)
    assert line.endswith(" " + value)


def test_format_tear_sheet_with_title_and_period_shows_header() -> None:
    # Act
    text = format_tear_sheet(known_metrics(), title="Momentum US", start=date(2024, 1, 2),
                             end=date(2024, 12, 31), sessions=252)

    # Assert
    lines = text.splitlines()
    assert lines[1] == "Momentum US"
    assert lines[2] == "2024-01-02 to 2024-12-31, 252 sessions"
    assert text.endswith("\n")


def test_format_tear_sheet_with_any_metrics_is_fixed_width() -> None:
    # Act
    text = format_tear_sheet(known_metrics(), title="T", start="2024-01-02", end="2024-12-31", sessions=252)

    # Assert: every rule, section header and metric row has the same width
    body = text.splitlines()[3:]
    assert {len(line) for line in body} == {60}
    assert [line for line in body if line.startswith("-- ")] == [
        f"-- {name} ".ljust(60, "-") for name in ("Returns", "Drawdown", "Benchmark", "Trading", "Risk")
    ]


def test_format_tear_sheet_with_nan_metrics_shows_not_available() -> None:
    # Arrange
    metrics = known_metrics(sharpe_ratio=NAN, beta=NAN, alpha=NAN, turnover=NAN, var_99=math.inf)

    # Act
    text = format_tear_sheet(metrics, title="T", start=date(2024, 1, 2), end=date(2024, 1, 3), sessions=2)

    # Assert
    for label in ("Sharpe ratio", "Beta", "Alpha (annualised)", "Turnover (annualised)", "VaR 99% (1 day, historical)"):
        assert line_for(text, label).endswith(" n/a")
    assert "nan" not in text.lower().replace("n/a", "")


def test_format_tear_sheet_with_daily_basis_labels_hit_rate_daily_and_hides_trade_count() -> None:
    # Arrange
    metrics = compute_metrics(np.array([100.0, 110.0, 99.0, 108.9]))

    # Act
    text = format_tear_sheet(metrics, title="T", start=date(2024, 1, 2), end=date(2024, 1, 5), sessions=4)

    # Assert: 2 of 3 days up; daily P&L profit factor (10 + 9.9) / 11 = 1.81
    assert line_for(text, "Hit rate (daily)").endswith(" 66.67%")
    assert line_for(text, "Profit factor (daily)").endswith(" 1.81")
    assert line_for(text, "Trades").endswith(" n/a")
    assert line_for(text, "Max drawdown").endswith(" -10.00%")


def test_format_tear_sheet_with_extra_rows_appends_details_section() -> None:
    # Act
    text = format_tear_sheet(known_metrics(), title="T", start=date(2024, 1, 2), end=date(2024, 12, 31),
                             sessions=252, extra={"Config hash": "ab12cd", "Mode": "BACKTEST"})

    # Assert
    lines = text.splitlines()
    details = lines.index("-- Details ".ljust(60, "-"))
    assert line_for(text, "Config hash").endswith(" ab12cd")
    assert lines[details + 1] == "  Config hash".ljust(44) + "ab12cd".rjust(16)
    assert lines[details + 2] == "  Mode".ljust(44) + "BACKTEST".rjust(16)


# ---------------------------------------------------------------- report


def test_write_report_with_benchmark_writes_png_and_html_embedding_it(tmp_path) -> None:
    # Arrange
    dates, equity, benchmark = curve()
    metrics = compute_metrics(equity, benchmark_returns=benchmark[1:] / benchmark[:-1] - 1)

    # Act
    paths = write_report(tmp_path / "reports" / "momentum.html", dates=dates, equity=equity,
                         benchmark_equity=benchmark, metrics=metrics, title="Momentum <US> & co")

    # Assert
    png_path, html_path = paths
    assert png_path == tmp_path / "reports" / "momentum.png"
    assert html_path == tmp_path / "reports" / "momentum.html"
    png = png_path.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    html = html_path.read_text(encoding="utf-8")
    assert "<title>Momentum &lt;US&gt; &amp; co</title>" in html
    assert "<h1>Momentum &lt;US&gt; &amp; co</h1>" in html
    assert "2024-01-01 to 2024-02-29, 60 sessions" in html
    [encoded] = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert base64.b64decode(encoded) == png


def test_write_report_with_metrics_puts_each_label_and_value_in_the_table(tmp_path) -> None:
    # Arrange
    dates, equity, _ = curve()

    # Act
    _, html_path = write_report(tmp_path / "r", dates=dates, equity=equity, benchmark_equity=None,
                                metrics=known_metrics(), title="T")

    # Assert
    html = html_path.read_text(encoding="utf-8")
    for label, value in EXPECTED_ROWS:
        assert f'<tr><td>{label}</td><td class="value">{value}</td></tr>' in html


def test_write_report_with_same_inputs_writes_identical_files(tmp_path) -> None:
    # Arrange
    dates, equity, benchmark = curve()
    metrics = compute_metrics(equity)

    # Act
    first = write_report(tmp_path / "a" / "r.html", dates=dates, equity=equity, benchmark_equity=benchmark,
                         metrics=metrics, title="T")
    second = write_report(tmp_path / "b" / "r.html", dates=dates, equity=equity, benchmark_equity=benchmark,
                          metrics=metrics, title="T")

    # Assert
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


@pytest.mark.parametrize(
    ("n_dates", "benchmark_length", "error", "message"),
    [
        (59, None, DataValidationError, r"dates must have one date per equity value \(60\), had 59"),
        (60, 59, DataValidationError, r"benchmark_equity must have one value per equity value \(60\), had 59"),
    ],
)
def test_write_report_with_misaligned_inputs_raises_naming_them(tmp_path, n_dates: int, benchmark_length: int | None,
                                                                error: type, message: str) -> None:
    # Arrange
    dates, equity, benchmark = curve()
    bench = None if benchmark_length is None else benchmark[:benchmark_length]

    # Act / Assert
    with pytest.raises(error, match=message):
        write_report(tmp_path / "r", dates=dates[:n_dates], equity=equity, benchmark_equity=bench,
                     metrics=known_metrics(), title="T")
    assert not list(tmp_path.iterdir())


def test_write_report_with_non_positive_benchmark_raises_naming_index(tmp_path) -> None:
    # Arrange
    dates, equity, benchmark = curve()
    benchmark[5] = 0.0

    # Act / Assert
    with pytest.raises(InvalidValueError, match=r"benchmark_equity\[5\]"):
        write_report(tmp_path / "r", dates=dates, equity=equity, benchmark_equity=benchmark,
                     metrics=known_metrics(), title="T")
