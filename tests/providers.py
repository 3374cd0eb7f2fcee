"""Builders shared by the tests: config folders, Dagster definitions and range runs."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

ROOT = Path(__file__).resolve().parents[1]


def make_config_dir(tmp_path: Path, n_instruments: int = 12, data_source: dict[str, Any] | None = None,
                    engines: dict[str, Any] | None = None) -> Path:
    """Copy ``configs/`` into ``tmp_path`` with a small synthetic market (or another data source)."""
    target = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", target)
    markets = yaml.safe_load((target / "markets.yaml").read_text())
    us = next(m for m in markets["markets"] if m["market_id"] == "US_EQ")
    if data_source is None:
        us["data_source"]["synthetic"]["n_instruments"] = n_instruments
    else:
        us["data_source"] = data_source
    (target / "markets.yaml").write_text(yaml.safe_dump(markets, sort_keys=False))
    if engines is not None:
        (target / "engines.yaml").write_text(yaml.safe_dump({"engines": engines}, sort_keys=False))
    return target


def warehouse_resource(location: dict[str, str]):
    """A WarehouseResource for ``open_warehouse``-style keyword arguments."""
    from prometheus_assets.resources import WarehouseResource

    if location["backend"] == "duckdb":
        return WarehouseResource(backend="duckdb", duckdb_path=location["duckdb_path"])
    return WarehouseResource(backend="postgres", postgres_url=location["postgres_url"])


def build_defs(config_dir: Path, location: dict[str, str], extra_assets: list | None = None) -> dg.Definitions:
    """Build the code location for a config folder and warehouse, optionally with extra assets."""
    from prometheus_assets.definitions import build_definitions

    defs = build_definitions(str(config_dir), warehouse_resource(location))
    if extra_assets:
        defs = dg.Definitions.merge(defs, dg.Definitions(assets=extra_assets))
    return defs


def run_range(defs: dg.Definitions, start: date, end: dg.Definitions | date, instance: dg.DagsterInstance | None = None,
              job_name: str = "ingest") -> dg.ExecuteInProcessResult:
    """Run ``job_name`` over ``start..end`` as one run, without raising on failure."""
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        instance=instance or dg.DagsterInstance.ephemeral(),
        tags={ASSET_PARTITION_RANGE_START_TAG: start.isoformat(), ASSET_PARTITION_RANGE_END_TAG: end.isoformat()},
        raise_on_error=False,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    """Map (asset key, check name) to the check evaluation of a run."""
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def write_csv(path: Path, rows: list[str], header: str = "date,ticker,open,high,low,close,volume") -> Path:
    """Write a long-format price CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path
