"""Typed, frozen configuration loaded from ``configs/``."""

from prometheus_lib.config.home import prometheus_home, resolve_under_home
from prometheus_lib.config.loader import default_config_dir, load_config
from prometheus_lib.config.models import (
    DataQualityConfig,
    MarketConfig,
    PlatformConfig,
    StrategyConfig,
    WarehouseConfig,
)

__all__ = [
    "DataQualityConfig",
    "MarketConfig",
    "PlatformConfig",
    "StrategyConfig",
    "WarehouseConfig",
    "default_config_dir",
    "load_config",
    "prometheus_home",
    "resolve_under_home",
]
