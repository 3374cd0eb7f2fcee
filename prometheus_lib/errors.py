"""One error tree for the whole platform.

Every error is a ``PrometheusError`` and also inherits the matching builtin, so callers can
catch either. Messages name the culprit (file, key, row, parameter), the bad value and what is
valid.
"""

from __future__ import annotations


class PrometheusError(Exception):
    """Base class of every error raised by Prometheus."""


class ConfigError(PrometheusError, ValueError):
    """A configuration file or value is invalid."""


class NotSessionError(PrometheusError, ValueError):
    """A date is not a trading session of the calendar in use."""


class CalendarError(PrometheusError, ValueError):
    """A calendar was asked for something outside what it covers."""


class WarehouseError(PrometheusError, RuntimeError):
    """The warehouse could not complete an operation."""


class WarehouseLockedError(WarehouseError):
    """Another process holds the embedded (DuckDB) warehouse; the message names it."""


class SchemaMismatchError(WarehouseError, ValueError):
    """A frame does not match the columns of the table it is written to."""


class UnknownTableError(WarehouseError, KeyError):
    """A table name is not in the catalogue."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DataValidationError(PrometheusError, ValueError):
    """Input data failed validation as a whole (not row by row: rows go to quarantine)."""


class ProviderError(PrometheusError, RuntimeError):
    """A market data provider could not deliver data."""


class InvalidValueError(PrometheusError, ValueError):
    """A money amount, quantity or price is NaN, infinite or out of range."""


class ExecutionError(PrometheusError, RuntimeError):
    """The execution layer (planner, broker, simulator) could not complete an operation."""


class IllegalOrderTransition(ExecutionError, ValueError):
    """An order was asked to move to a status its state machine does not allow."""


class UnknownOrderError(ExecutionError, KeyError):
    """An order id is not known to the broker."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LookAheadError(PrometheusError, RuntimeError):
    """A read asked for data not yet known at the current session."""
