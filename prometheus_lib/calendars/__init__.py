"""Exchange calendars and market state."""

from prometheus_lib.calendars.trading_calendar import MarketState, TradingCalendar

__all__ = ["MarketState", "TradingCalendar"]
