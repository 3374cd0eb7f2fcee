"""Dagster's embedded (SQLite) event log, tuned for long single-run backfills.

A backtest over ten years materialises thousands of (asset, session) partitions in one run, and
Dagster records one event per materialisation. Dagster's own ``SqliteEventLogStorage`` opens a
new SQLAlchemy engine and connection for every write and commits with ``synchronous=FULL``, so
each event costs a few fsyncs: 35-40 ms per materialised session on this machine (measured in
``bench/backtest.py``; DAGSTER_NOTES.md has the same order of magnitude).

``PrometheusSqliteEventLogStorage`` is the same storage (same files, schema and watchers) with
two changes:

* one engine per shard, kept in a small LRU (a pool of one reused connection per database file)
  instead of a new engine per write;
* ``PRAGMA synchronous=NORMAL`` on those connections. Dagster already runs SQLite in WAL mode,
  where NORMAL still never corrupts the database; what it gives up is the durability of the
  last commits if the *machine* (not the process) loses power. For run bookkeeping on a
  workstation that is the right trade; production runs PostgreSQL storage (DAGSTER_PG_*).

Measured: 3-4 ms per materialised session instead of 35-40 ms (2 assets x 250 sessions).

A third change: a partitioned check's "planned" event of a range run is stored as one row per
partition, and Dagster 1.13 serialises the same event again for each row (with its whole
partition subset). Serialising it once per event gives the same rows: a two-year run of one
market (34 partitioned checks x 502 sessions) spent ~28 s of its start there on a loaded
2-core machine, now well under a second.

A fourth: the event stored in each of those planned rows is the planned event *without* its
partition subset (``partitions_subset=None``). Dagster copies the whole event, subset included,
into every row: about 13.6 KB per row (the subset serialises the session calendar's holiday
exclusions), so ~125 MB of ``index.db`` per one-year run of one market (34 checks x 252
sessions). Each row already names its partition in its own column, and nothing reads the subset
back from a row (only the storage's own write path reads it, from the event being stored); the
run's event log keeps the full event. Measured with ``bench/dagster_growth.py`` (one year of
the main job): 0.85 KB per stored event instead of 13.56 KB (1.33 KB per row with its indexes
instead of 14.35 KB), and ``index.db`` grows 34.9 MB per run instead of 148.3 MB.
``prometheus`` writes it into ``$DAGSTER_HOME/dagster.yaml`` when Dagster's storage is SQLite.

The third and fourth changes (planned rows) apply to PostgreSQL storage too:
``PrometheusPostgresEventLogStorage`` is dagster-postgres's event log with them, named in the
repository's ``dagster.yaml``.
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import dagster._check as check
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage
from dagster._serdes import serialize_value
from dagster_shared.record import replace
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

_MAX_ENGINES = 16  # one per shard: the index, plus the runs being written or watched


class PlannedCheckRowsMixin:
    """One planned check-execution row per partition, the event serialised once and without its
    partition subset (see the module docstring). For SQL event logs (SQLite, PostgreSQL)."""

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:  # type: ignore[override]
        # Dagster's own, with the event serialised once instead of once per partition key.
        dagster_event = check.not_none(event.dagster_event)
        planned = cast(AssetCheckEvaluationPlanned, dagster_event.event_specific_data)
        partition_keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        row_event = event
        if planned.partitions_subset is not None:  # see the module docstring: the row names its partition
            row_event = event._replace(dagster_event=dagster_event._replace(
                event_specific_data=replace(planned, partitions_subset=None)))
        serialized = serialize_value(row_event)
        timestamp = self._event_insert_timestamp(event)
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert().values([
                    dict(
                        asset_key=planned.asset_key.to_string(),
                        check_name=planned.check_name,
                        partition=partition_key,
                        run_id=event.run_id,
                        execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                        evaluation_event=serialized,
                        evaluation_event_timestamp=timestamp,
                        evaluation_event_storage_id=event_id,
                    )
                    for partition_key in partition_keys
                ])
            )


class PrometheusSqliteEventLogStorage(PlannedCheckRowsMixin, SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with reused connections and ``synchronous=NORMAL`` (see module docstring)."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        # set before the parent's __init__, which already connects (index migrations)
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> "PrometheusSqliteEventLogStorage":
        # The parent hard-codes its own class here; a subclass must build itself.
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=2,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _tune)
            self._engines[shard] = engine
            while len(self._engines) > _MAX_ENGINES:
                _, old = self._engines.popitem(last=False)
                old.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def delete_events(self, run_id: str) -> None:
        super().delete_events(run_id)  # connects to the run's file: forget that engine afterwards
        self.forget_shard(run_id)

    def forget_shard(self, shard: str) -> None:
        """Close the connections to a run's file and forget it (before the file is removed)."""
        with self._db_lock, self._engines_lock:
            engine = self._engines.pop(shard, None)
            if engine is not None:
                engine.dispose()
            self._initialized_dbs.discard(shard)

    def dispose(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()


def _postgres_event_log_class() -> type:
    from dagster_postgres.event_log import PostgresEventLogStorage

    class PrometheusPostgresEventLogStorage(PlannedCheckRowsMixin, PostgresEventLogStorage):
        """dagster-postgres's event log with the planned-row changes (see the module docstring)."""

        @classmethod
        def from_config_value(cls, inst_data: Any, config_value: Any) -> "PrometheusPostgresEventLogStorage":
            # The parent hard-codes its own class here; a subclass must build itself.
            from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

            return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                       should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                       token_provider=get_token_provider_from_config(config_value))

    PrometheusPostgresEventLogStorage.__module__ = __name__
    PrometheusPostgresEventLogStorage.__qualname__ = "PrometheusPostgresEventLogStorage"
    return PrometheusPostgresEventLogStorage


def __getattr__(name: str) -> Any:
    # Built on first use: importing dagster_postgres is only needed with PostgreSQL storage.
    if name == "PrometheusPostgresEventLogStorage":
        cls = _postgres_event_log_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _tune(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_storage_settings(home: str) -> dict[str, Any]:
    """The dagster.yaml storage entries for the embedded default under ``home`` (Dagster's own layout)."""
    return {
        "run_storage": {"module": "dagster._core.storage.runs", "class": "SqliteRunStorage",
                        "config": {"base_dir": os.path.join(home, "history", "")}},
        "event_log_storage": {"module": __name__, "class": PrometheusSqliteEventLogStorage.__name__,
                              "config": {"base_dir": os.path.join(home, "history", "runs", "")}},
        "schedule_storage": {"module": "dagster._core.storage.schedules", "class": "SqliteScheduleStorage",
                             "config": {"base_dir": os.path.join(home, "schedules")}},
    }
