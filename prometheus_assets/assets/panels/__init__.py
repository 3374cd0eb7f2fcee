"""dbt panels as session-partitioned assets: staging views, intermediate models and the marts
returns_daily, volatility_daily, factors_daily, instrument_factors_daily, correlation_panels.

One ``@dbt_assets`` op per market with data builds them with ``dbt build`` for the run's session range (single-run
backfill policy); the window travels in PROMETHEUS_PANEL_* environment variables (see
macros/panels/panel_window.sql) and the marts replace exactly that window.
dbt tests become asset checks; error-severity ones are blocking. The data tests of the panels
and of the prices read the run's window only (macros/tests/get_where_subquery.sql); the dbt unit
tests and the cross-database macro tests are tests of the SQL, run by the test suite, not by the
asset (``prometheus_lib.storage.dbt.PANEL_EXCLUDE``). The text staging views, which no panel
reads, are unpartitioned assets of their own (``build_text_staging_assets``): a view changes
with its SQL, not with a session.

dbt-core runs in the run's own process (:class:`DbtPanelsResource`, on
``prometheus_lib.storage.dbt.DbtSession``), the path the benchmarks time: no ``dbt``
subprocess, no second import of dbt-core, and the project is parsed once per process and
warehouse. Each finished node's event is turned into Dagster events by dagster-dbt's own
translation (the one ``DbtCliResource.cli(...).stream()`` uses) as the node finishes.
"""

import fcntl
import hashlib
import queue
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets
from dagster_dbt.asset_utils import DAGSTER_DBT_EXCLUDE_METADATA_KEY, get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from prometheus_assets.assets.reference import CONFIG_TABLES
from prometheus_assets.constants import HISTORICAL, PANELS, RUNTIME, TEXT_STAGING
from prometheus_assets.markets import MarketScope
from prometheus_assets.partitions import keys_to_sessions
from prometheus_assets.resources import WarehouseResource
from prometheus_lib.config.home import prometheus_home
from prometheus_lib.storage.dbt import (
    DBT_PROJECT_DIR,
    PANEL_EXCLUDE,
    PANEL_SELECT,
    TEXT_STAGING_SELECT,
    DbtRun,
    DbtSession,
    dbt_session,
    dbt_target_env,
    panel_env,
    project_sources_mtime,
)

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"


def ensure_manifest() -> Path:
    """Return dbt's manifest, running ``dbt parse`` first when it is missing or stale.

    A file lock keeps concurrent processes (test workers, the webserver) from parsing at once.
    """
    lock_path = DBT_PROJECT_DIR / "target" / ".parse.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if MANIFEST.exists() and MANIFEST.stat().st_mtime >= project_sources_mtime():
            return MANIFEST
        env = {"PROMETHEUS_DBT_TARGET": "duckdb", "PROMETHEUS_DUCKDB_PATH": ":memory:"}
        run = DbtSession(env, DBT_PROJECT_DIR).parse(["--quiet"])
        if run.returncode != 0 or not MANIFEST.exists():
            raise RuntimeError(f"dbt parse failed for {DBT_PROJECT_DIR}:\n{run.stdout[-4000:]}{run.stderr[-2000:]}")
        return MANIFEST


class PanelTranslator(DagsterDbtTranslator):
    """dbt sources are the ingestion/reference assets; models live under their schema's prefix.

    ``prefix`` puts every key of a non-primary market under ``<market_id>/`` (its models, tests
    and the sources they read), except the config tables all markets share (``runtime/markets``):
    each market's panels are assets of their own, and two markets' keys never collide.
    """

    def __init__(self, prefix: tuple[str, ...] = (), settings: DagsterDbtTranslatorSettings | None = None):
        super().__init__(settings=settings)
        self.prefix = tuple(prefix)

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            path = [dbt_resource_props["source_name"], dbt_resource_props["name"]]
            shared = path[0] == RUNTIME and path[1] in CONFIG_TABLES
            return dg.AssetKey(path if shared else [*self.prefix, *path])
        name = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        fqn = dbt_resource_props.get("fqn", [])
        if "marts" in fqn:
            return dg.AssetKey([*self.prefix, HISTORICAL, name])
        layer = "staging" if "staging" in fqn else "intermediate"
        return dg.AssetKey([*self.prefix, layer, name])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return PANELS if not self.prefix else f"{PANELS}_{self.prefix[0].lower()}"


class TextStagingTranslator(PanelTranslator):
    """The text staging views: the same keys, in a group of their own, unpartitioned (the main job
    builds them once per run; the panel runs do not).

    Their relationship tests read models they do not select from (the market reference views,
    which the panel asset builds): each view also depends on those, so a run that builds both
    (the main job) tests the views after the models their tests read exist.
    """

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return TEXT_STAGING

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if not unique_id.startswith("model."):
            return spec
        nodes = manifest["nodes"]
        folder = nodes[unique_id]["fqn"][:-1]
        read = {  # models outside this folder (the multi-asset's own are ordered by dbt and may cycle)
            parent
            for test in manifest.get("child_map", {}).get(unique_id, []) if test.startswith("test.")
            for parent in nodes[test]["depends_on"]["nodes"]
            if parent.startswith("model.") and nodes[parent]["fqn"][:-1] != folder
        }
        known = {d.asset_key for d in spec.deps}
        extra = [k for k in (self.get_asset_key(nodes[p]) for p in sorted(read)) if k not in known]
        return spec.merge_attributes(deps=extra) if extra else spec


def warehouse_work_dir(target_env: Mapping[str, str], root: str | Path) -> Path:
    """dbt's work folder (target, logs) under ``root`` for the warehouse ``target_env`` points at.

    One folder per warehouse: dbt's partial parse is only valid for the profile it was made
    with, so the runs of one warehouse share it, across processes, and the runs of another
    never overwrite it. The name is a digest of the warehouse's non-secret parts only (backend,
    host, port, user, database or file): the folder name, written to logs and the event log,
    must not be a hash of the password that anyone could test guesses against offline (dbt's
    partial parse does not depend on the password either).
    """
    public = sorted((k, v) for k, v in target_env.items() if "PASSWORD" not in k.upper())
    digest = hashlib.sha256(repr(public).encode()).hexdigest()[:16]
    return Path(root) / f"{target_env.get('PROMETHEUS_DBT_TARGET', 'dbt')}-{digest}"


class DbtPanelsResource(dg.ConfigurableResource):
    """Runs the project's dbt in the run's process and streams its nodes as Dagster events.

    ``work_root`` holds one dbt work folder per warehouse (:func:`warehouse_work_dir`); empty
    means ``$PROMETHEUS_HOME/dbt`` when the run starts.
    """

    work_root: str = ""

    def build(
        self,
        context: dg.AssetExecutionContext,
        target_env: Mapping[str, str],
        window_env: Mapping[str, str] | None,
    ) -> Iterator[Any]:
        """``dbt build`` of the context's selected models and checks; Dagster events as nodes finish.

        Selection, indirect selection and the event translation are dagster-dbt's, as in
        ``DbtCliResource.cli(["build"], context=context).stream()``: an Output per model built,
        an AssetCheckResult per selected test. When a node fails, the remaining events are
        yielded and then a ``DagsterDbtCliRuntimeError`` is raised, as dagster-dbt does.

        Parameters
        ----------
        context
            The ``@dbt_assets`` op's context.
        target_env
            The warehouse (``prometheus_lib.storage.dbt.dbt_target_env``).
        window_env
            The panel window (``prometheus_lib.storage.dbt.panel_env``); None: no window (all
            history, every row tested).
        """
        params = get_updated_cli_invocation_params_for_context(
            context=context, manifest={}, dagster_dbt_translator=DagsterDbtTranslator(),
        )
        args = ["build", *params.selection_args]
        exclude = context.op.tags.get(DAGSTER_DBT_EXCLUDE_METADATA_KEY)
        if exclude and "--exclude" not in args:
            # A subset run selects its models by name, and dbt would add the unit tests of those
            # models and data tests that belong to another assets definition: keep out what
            # this one leaves out.
            args += ["--exclude", exclude]
        if params.indirect_selection:
            args += ["--indirect-selection", params.indirect_selection]
        work = warehouse_work_dir(target_env, self.work_root or prometheus_home() / "dbt")
        session = dbt_session(target_env, work)
        context.log.info(f"dbt {' '.join(args)} in this process (work folder {work}; "
                         f"{'manifest in memory' if session.is_parsed else 'parsing the project first'})")
        events: queue.Queue[dict[str, Any] | DbtRun | BaseException] = queue.Queue()

        def invoke() -> None:
            try:
                events.put(session.invoke(args, window_env, on_node_result=events.put))
            except BaseException as e:  # noqa: BLE001 - handed to the op's thread below
                events.put(e)

        # dbt runs on a thread of its own so that each node's events reach Dagster as it ends.
        worker = threading.Thread(target=invoke, name="dbt-panels", daemon=True)
        worker.start()
        while not isinstance(item := events.get(), DbtRun | BaseException):
            event = DbtCoreCliEventMessage(raw_event=item, event_history_metadata={})
            sys.stdout.write(f"{event}\n")
            yield from event.to_default_asset_events(
                manifest=params.manifest, dagster_dbt_translator=params.dagster_dbt_translator,
                context=context, target_path=work / "target", project=params.dbt_project,
            )
        worker.join()
        if isinstance(item, BaseException):
            raise item
        if item.returncode != 0:
            raise DagsterDbtCliRuntimeError(
                description=f"dbt {' '.join(args)} failed (exit code {item.returncode}; failed nodes: "
                            f"{item.failed or 'none'}):\n{item.stdout[-4000:]}\n{item.stderr[-4000:]}"
            )


def build_panel_assets(partitions_def: dg.PartitionsDefinition, market: MarketScope | str) -> dg.AssetsDefinition:
    """Return the dbt assets of ``market``'s panels over ``partitions_def`` (a plain id: the primary).

    The run's window and market travel to dbt in ``panel_env``: the marts delete and rewrite
    only that market's rows of the window.
    """
    if isinstance(market, str):
        market = MarketScope(market, is_primary=True)
    market_id = market.market_id
    translator = PanelTranslator(prefix=market.prefix, settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    @dbt_assets(
        manifest=ensure_manifest(),
        select=PANEL_SELECT,
        exclude=PANEL_EXCLUDE,
        dagster_dbt_translator=translator,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name=market.op("dbt_panels"),
    )
    def dbt_panels(context: dg.AssetExecutionContext, dbt: DbtPanelsResource, warehouse: WarehouseResource):
        """Build the dbt panels for the run's session range (one dbt build, marts replace that window)."""
        sessions = keys_to_sessions(context.partition_keys)
        window = panel_env(min(sessions), max(sessions), market_id)
        with dg.build_resources({"w": warehouse}) as res:
            w = res.w
        target = dbt_target_env(w.backend, w.duckdb_path, w.postgres_url)
        context.log.info(f"dbt build for sessions {sessions[0]}..{sessions[-1]} of {market_id} on {w.backend}")
        yield from dbt.build(context, target, window)

    return dbt_panels


def build_text_staging_assets() -> dg.AssetsDefinition:
    """The text staging views (news, filings, calls, macro events) and their tests, unpartitioned."""

    @dbt_assets(
        manifest=ensure_manifest(),
        select=TEXT_STAGING_SELECT,
        dagster_dbt_translator=TextStagingTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
        name="dbt_text_staging",
    )
    def dbt_text_staging(context: dg.AssetExecutionContext, dbt: DbtPanelsResource, warehouse: WarehouseResource):
        """Build the text staging views and test every row of them (they read whole tables)."""
        with dg.build_resources({"w": warehouse}) as res:
            w = res.w
        yield from dbt.build(context, dbt_target_env(w.backend, w.duckdb_path, w.postgres_url), None)

    return dbt_text_staging


def dbt_resource() -> DbtPanelsResource:
    """The dbt resource: dbt-core in the run's process, its work folders in ``$PROMETHEUS_HOME/dbt``.

    The folder is fixed when the definitions are built, so every run of a code location finds
    the partial parse of its warehouse there.
    """
    return DbtPanelsResource(work_root=str(prometheus_home() / "dbt"))
