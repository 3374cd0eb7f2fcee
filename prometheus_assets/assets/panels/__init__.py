"""dbt panels as session-partitioned assets: staging views, intermediate models and the marts
returns_daily, volatility_daily, factors_daily, instrument_factors_daily, correlation_panels.

One ``@dbt_assets`` op builds them with ``dbt build`` for the run's session range (single-run
backfill policy); the window travels in PROMETHEUS_PANEL_* environment variables (see
macros/panels/panel_window.sql) and the marts replace exactly that window.
dbt tests become asset checks; error-severity ones are blocking.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from prometheus_assets.constants import HISTORICAL, PANELS
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import WarehouseResource
from prometheus_lib.storage.dbt import DBT_PROJECT_DIR, dbt_executable, dbt_target_env, panel_env, run_dbt

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
_SOURCES = ("models", "macros", "tests", "dbt_project.yml", "profiles.yml")


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in _SOURCES:
        path = DBT_PROJECT_DIR / name
        files = [path] if path.is_file() else path.rglob("*")
        for f in files:
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    return newest


def ensure_manifest() -> Path:
    """Return dbt's manifest, running ``dbt parse`` first when it is missing or stale.

    A file lock keeps concurrent processes (test workers, the webserver) from parsing at once.
    """
    lock_path = DBT_PROJECT_DIR / "target" / ".parse.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if MANIFEST.exists() and MANIFEST.stat().st_mtime >= _newest_source_mtime():
            return MANIFEST
        env = {"PROMETHEUS_DBT_TARGET": "duckdb", "PROMETHEUS_DUCKDB_PATH": ":memory:"}
        run = run_dbt(["parse", "--quiet"], env, DBT_PROJECT_DIR)
        if run.returncode != 0 or not MANIFEST.exists():
            raise RuntimeError(f"dbt parse failed for {DBT_PROJECT_DIR}:\n{run.stdout[-4000:]}{run.stderr[-2000:]}")
        return MANIFEST


class PanelTranslator(DagsterDbtTranslator):
    """dbt sources are the ingestion/reference assets; models live under their schema's prefix."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        name = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        fqn = dbt_resource_props.get("fqn", [])
        if "marts" in fqn:
            return dg.AssetKey([HISTORICAL, name])
        layer = "staging" if "staging" in fqn else "intermediate"
        return dg.AssetKey([layer, name])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return PANELS


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the dbt subprocess launched inside, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_panel_assets(partitions_def: dg.PartitionsDefinition, market_id: str) -> dg.AssetsDefinition:
    """Return the dbt assets of ``market_id``'s panels over ``partitions_def``."""

    @dbt_assets(
        manifest=ensure_manifest(),
        dagster_dbt_translator=PanelTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name="dbt_panels",
    )
    def dbt_panels(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        """Build the dbt panels for the run's session range (one dbt build, marts replace that window)."""
        sessions = keys_to_sessions(context.partition_keys)
        window = panel_env(min(sessions), max(sessions), market_id)
        with dg.build_resources({"w": warehouse}) as res:
            w = res.w
        env = {**dbt_target_env(w.backend, w.duckdb_path, w.postgres_url), **window}
        context.log.info(f"dbt build for sessions {sessions[0]}..{sessions[-1]} of {market_id} on {w.backend}")
        with _environment(env):
            yield from dbt.cli(["build"], context=context).stream()

    return dbt_panels


def dbt_resource() -> DbtCliResource:
    """The dbt CLI resource: the project's own profiles and the virtualenv's dbt."""
    return DbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable())
