"""Performance analytics: metrics of a daily equity curve, tear sheets and reports."""

from prometheus_lib.analytics.metrics import (
    HIT_RATE_BASIS_DAILY,
    HIT_RATE_BASIS_TRADES,
    PerformanceMetrics,
    compute_metrics,
    drawdown_series,
)
from prometheus_lib.analytics.tearsheet import format_tear_sheet, metric_rows, write_report

__all__ = [
    "HIT_RATE_BASIS_DAILY",
    "HIT_RATE_BASIS_TRADES",
    "PerformanceMetrics",
    "compute_metrics",
    "drawdown_series",
    "format_tear_sheet",
    "metric_rows",
    "write_report",
]
