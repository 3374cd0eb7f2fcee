"""Which markets have assets, and how a market's assets, groups, jobs and ops are named.

Every market with a ``data_source`` in ``configs/markets.yaml`` gets its own reference,
ingestion and panel assets, partitioned by its own exchange's sessions. The primary market
keeps the plain names (``historical/prices_daily``, group ``ingestion``, job ``main``) that the
strategies, the UI's history and the tools already use; every other market's names carry its
id: asset keys under the prefix ``<market_id>/`` (``EU_EQ/historical/prices_daily``), groups
``<group>_<market_id lower>`` (``ingestion_eu_eq``), jobs ``<job>_<market_id>`` (``main_EU_EQ``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from prometheus_lib.config import PlatformConfig
from prometheus_lib.config.models import MarketConfig


@dataclass(frozen=True, slots=True)
class MarketScope:
    """The names of one market's assets: key prefix, groups, jobs and op names."""

    market_id: str
    is_primary: bool

    @classmethod
    def of(cls, config: PlatformConfig, market_id: str) -> MarketScope:
        """The scope of ``market_id`` in ``config`` (primary or not)."""
        config.market(market_id)  # raises on an unknown market, listing the known ones
        return cls(market_id, market_id == config.primary_market)

    @property
    def prefix(self) -> tuple[str, ...]:
        """Asset key prefix: none for the primary market, ``(market_id,)`` otherwise."""
        return () if self.is_primary else (self.market_id,)

    def key(self, *path: str) -> dg.AssetKey:
        """The asset key ``path`` of this market (prefixed unless primary)."""
        return dg.AssetKey([*self.prefix, *path])

    def group(self, base: str) -> str:
        """The asset group ``base`` of this market (``ingestion`` / ``ingestion_eu_eq``)."""
        return base if self.is_primary else f"{base}_{self.market_id.lower()}"

    def job(self, base: str) -> str:
        """The job ``base`` of this market (``main`` / ``main_EU_EQ``)."""
        return base if self.is_primary else f"{base}_{self.market_id}"

    def op(self, name: str) -> str:
        """An op name unique across markets (op names must be unique in a code location)."""
        return name if self.is_primary else f"{self.market_id.lower()}__{name}"


def has_data_source(market: MarketConfig) -> bool:
    """Whether ``market`` names a data source in markets.yaml (the field's default is no data)."""
    return "data_source" in market.model_fields_set


def data_markets(config: PlatformConfig) -> tuple[MarketConfig, ...]:
    """The markets that have assets: the primary market first, then those with a data source."""
    primary = config.market(config.primary_market)
    return (primary, *(m for m in config.markets if m.market_id != primary.market_id and has_data_source(m)))


def select_markets(config: PlatformConfig, market_ids: Sequence[str] | None) -> tuple[MarketConfig, ...]:
    """The data markets named in ``market_ids`` (all of them when None), in configuration order.

    Raises
    ------
    ValueError
        If a name is not a market with data; the message lists those that are.
    """
    markets = data_markets(config)
    if market_ids is None:
        return markets
    known = [m.market_id for m in markets]
    unknown = [m for m in market_ids if m not in known]
    if unknown:
        raise ValueError(f"markets must be among the markets with data {known}, was {unknown}")
    return tuple(m for m in markets if m.market_id in market_ids)
