"""Run the project's dbt against a warehouse: the same profiles for DuckDB and PostgreSQL.

dbt-core runs in this process (``dbtRunner``), not as a ``dbt`` subprocess: a
:class:`DbtSession` parses the project once per warehouse and work folder and hands that
manifest to every later command, so a one-session panel build pays for its SQL, not for
starting dbt (importing dbt-core alone takes ~2 s, loading the project ~1 s). The benchmarks,
the tests (:func:`run_dbt`) and the Dagster panel asset (node events through
``on_node_result``) all build panels this way. ``dbt_executable`` remains for the CLI.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_lib.config.home import REPO_ROOT, resolve_under_home, scoped_environment
from prometheus_lib.errors import WarehouseError
from prometheus_lib.security import redact_dsn, redact_error, redact_text

if TYPE_CHECKING:
    from dbt.contracts.graph.manifest import Manifest

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# What a parse reads: a file here newer than the parse means the manifest is stale.
PROJECT_SOURCES = ("models", "macros", "tests", "dbt_project.yml", "profiles.yml")
# dbt's log events of a finished node, the ones the Dagster asset turns into asset events.
NODE_RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})
# Nothing on this process's stdout (DbtRun.stdout has the console's lines); every command but
# `parse` returns its results in memory (no run_results.json or manifest.json to write).
_QUIET = ("--log-level", "none", "--no-use-colors")
_RUN_FLAGS = ("--no-write-json", *_QUIET)
_SESSIONS_KEPT = 4

# What the Dagster panel asset builds for a session window (its @dbt_assets select/exclude, so
# also the dbt selection of a run of all its assets): every model and data test, less
#   - the text staging views: no panel reads them; an unpartitioned asset of their own builds
#     them (their SQL, not a session, changes them);
#   - the dbt unit tests: tests of the models' SQL on given rows, not of the warehouse's data
#     (they are not asset checks either); the test suite runs them (tests/dbt/test_panel_checks.py).
# The cross-database macro tests (tag cross_db, singular tests of constant cases) are code tests
# too; the test suite runs them (tests/dbt/test_dbt_project.py).
# (fqn, not path: selectors: dagster-dbt evaluates a path: against the process's working folder.)
PANEL_SELECT = "fqn:*"
PANEL_EXCLUDE = "fqn:staging.text resource_type:unit_test tag:cross_db"
TEXT_STAGING_SELECT = "fqn:staging.text"


def panel_build_args() -> list[str]:
    """``dbt build`` as the Dagster panel asset runs it for a session window (all its assets)."""
    return ["build", "--select", PANEL_SELECT, "--exclude", PANEL_EXCLUDE]


# dbt-core keeps its flags, adapters, event manager and invocation context in module globals,
# and reads the profile's environment variables from os.environ: one command at a time.
_DBT_LOCK = threading.RLock()


def dbt_executable() -> str:
    """The ``dbt`` of the running interpreter's environment (never PATH luck)."""
    return str(Path(sys.executable).parent / "dbt")


def project_sources_mtime() -> float:
    """The newest modification time of the dbt project's sources (models, macros, tests, configs)."""
    newest = 0.0
    for name in PROJECT_SOURCES:
        path = DBT_PROJECT_DIR / name
        files = [path] if path.is_file() else path.rglob("*")
        for f in files:
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    return newest


def dbt_target_env(backend: str, duckdb_path: str | None = None, postgres_url: str | None = None) -> dict[str, str]:
    """Environment variables that point the project's profile at a warehouse.

    Parameters
    ----------
    backend
        "duckdb" or "postgres".
    duckdb_path
        The DuckDB file (relative paths are under PROMETHEUS_HOME).
    postgres_url
        libpq connection string of the PostgreSQL warehouse: a URL (userinfo or query
        parameters) or a key=value DSN, read by libpq's own parser. Errors name it redacted.
    """
    if backend == "duckdb":
        if not duckdb_path:
            raise WarehouseError("dbt on DuckDB needs the warehouse file path")
        return {"PROMETHEUS_DBT_TARGET": "duckdb", "PROMETHEUS_DUCKDB_PATH": str(resolve_under_home(duckdb_path))}
    if backend == "postgres":
        if not postgres_url:
            raise WarehouseError("dbt on PostgreSQL needs the warehouse URL")
        from psycopg import Error as PsycopgError
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = {k: str(v) for k, v in conninfo_to_dict(postgres_url).items() if v is not None}
        except PsycopgError as e:
            raise WarehouseError(f"invalid PostgreSQL warehouse connection string {redact_dsn(postgres_url)}: "
                                 f"{redact_error(e, postgres_url)}") from None
        host = params.get("host") or params.get("hostaddr") or "127.0.0.1"
        port = params.get("port") or "5432"
        if "," in host or not port.isdigit():
            # dbt's profile takes one host and a numeric port. Their values are never echoed: they
            # may be pieces of a password holding an unencoded "/", "@" or "?" that libpq misread.
            raise WarehouseError(f"dbt needs one PostgreSQL host and a numeric port, which the warehouse "
                                 f"{redact_dsn(postgres_url)} does not give (percent-encode a password's "
                                 f"'/', '@' and '?' in a URL)")
        user = params.get("user") or "postgres"
        return {
            "PROMETHEUS_DBT_TARGET": "postgres",
            "PROMETHEUS_PG_HOST": host,
            "PROMETHEUS_PG_PORT": port,
            "PROMETHEUS_PG_USER": user,
            "PROMETHEUS_PG_PASSWORD": params.get("password", ""),
            "PROMETHEUS_PG_DBNAME": params.get("dbname") or user,
        }
    raise WarehouseError(f"backend must be 'duckdb' or 'postgres', was {backend!r}")


def target_secrets(target_env: Mapping[str, str]) -> list[str]:
    """The secrets in ``target_env`` (the PostgreSQL password), to scrub from dbt's output."""
    return [v for k, v in target_env.items() if "PASSWORD" in k and v]


def panel_env(start: date, end: date, market_id: str) -> dict[str, str]:
    """Environment of a panel run over sessions ``start..end`` of ``market_id``.

    The window travels in environment variables rather than ``--vars`` so that dbt keeps its
    partial parse between runs of different windows (see macros/panels/panel_window.sql).
    """
    return {
        "PROMETHEUS_PANEL_MIN_DATE": start.isoformat(),
        "PROMETHEUS_PANEL_MAX_DATE": end.isoformat(),
        "PROMETHEUS_PANEL_MARKET_ID": market_id,
    }


@dataclass(frozen=True, slots=True)
class DbtRun:
    """The outcome of one dbt command.

    ``returncode`` is the CLI's: 0 success, 1 a node failed (or a test), 2 dbt itself failed.
    ``stdout`` holds the lines dbt's console would print, ``stderr`` the traceback of an
    exception, ``results`` the run_results.json entries by node name.
    """

    returncode: int
    stdout: str
    stderr: str
    results: dict[str, dict[str, Any]]

    @property
    def failed(self) -> dict[str, str]:
        """Nodes whose status is not success/pass, by name."""
        return {k: r["status"] for k, r in self.results.items() if r["status"] not in ("success", "pass")}


def _close_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb may still hold, so other processes can write the file."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # the PostgreSQL-only install
        return
    with DuckDBConnectionManager._LOCK:  # noqa: SLF001 - no public way to drop the environment
        env, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None  # noqa: SLF001
    if env is not None:
        env.close()


def _duckdb_database(target_env: Mapping[str, str]) -> str | None:
    """The DuckDB file a dbt command on ``target_env`` opens, or None (PostgreSQL, in memory)."""
    path = target_env.get("PROMETHEUS_DUCKDB_PATH")
    if target_env.get("PROMETHEUS_DBT_TARGET") != "duckdb" or not path or path == ":memory:":
        return None
    return path


@contextmanager
def _warehouse_lock(database: str | None) -> Iterator[None]:
    """Hold the DuckDB warehouse lock of ``database`` (re-entrant; nothing when None)."""
    if database is None:
        yield
        return
    from prometheus_lib.storage.lock import warehouse_lock

    with warehouse_lock(database):
        yield


def _raise_if_locked(database: str, texts: Sequence[str]) -> None:
    """Raise the one-line WarehouseLockedError when dbt-duckdb failed on DuckDB's file lock
    (a process outside the warehouse lock, say a DuckDB shell, holds the file)."""
    from prometheus_lib.storage.lock import is_duckdb_lock_error, locked_error

    for text in texts:
        if is_duckdb_lock_error(text):
            line = next(ln for ln in text.splitlines() if is_duckdb_lock_error(ln))
            raise locked_error(database, duckdb_message=line)


def _node_name(unique_id: str) -> str:
    return unique_id.split(".")[-1] if unique_id.startswith("unit_test") else unique_id.split(".")[2]


class DbtSession:
    """dbt-core in this process on one warehouse: the project parsed once, reused by every command.

    The first command parses the project (from ``work_dir``'s partial parse when it is valid,
    so ~1 s rather than ~5 s); later commands run on that manifest and pay only for their
    nodes. The manifest is parsed again when a project source changes. Values the manifest
    does not hold are read per command: the profile (from ``target_env``), the panel window
    (environment variables read when a model compiles) and ``--vars``. A command that changes
    what is *parsed* (a ``config()`` depending on a var) needs a new parse: call :meth:`parse`.

    Parameters
    ----------
    target_env
        Environment variables that point the profile at the warehouse (:func:`dbt_target_env`).
    work_dir
        dbt's target and log folders; the partial parse lives in ``work_dir/target``.
    """

    def __init__(self, target_env: Mapping[str, str], work_dir: str | Path) -> None:
        self.target_env = dict(target_env)
        self.work_dir = Path(work_dir)
        self._manifest: Manifest | None = None
        self._parsed_mtime = 0.0

    def _paths(self) -> list[str]:
        return ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
                "--target-path", str(self.work_dir / "target"), "--log-path", str(self.work_dir / "logs")]

    @property
    def is_parsed(self) -> bool:
        """Whether the session holds a manifest (its next command skips parsing)."""
        return self._manifest is not None

    def manifest(self) -> Manifest:
        """The parsed project, parsing it first when there is none or a source changed since."""
        if self._manifest is None or project_sources_mtime() > self._parsed_mtime:
            run = self.parse(write_json=False)
            if self._manifest is None:
                raise WarehouseError(f"dbt parse of {DBT_PROJECT_DIR} failed:\n{run.stdout[-4000:]}{run.stderr[-2000:]}")
        return self._manifest

    def parse(self, args: Sequence[str] = (), write_json: bool = True) -> DbtRun:
        """Parse the project (``dbt parse``) and keep the manifest for the next commands.

        Parameters
        ----------
        args
            More flags of the parse command.
        write_json
            Write target/manifest.json (what ``dbt parse`` does); the session needs only the
            in-memory manifest and the partial parse file, which is always written.
        """
        from dbt.contracts.graph.manifest import Manifest

        mtime = project_sources_mtime()
        flags = [*args, *self._paths(), *_QUIET, *(() if write_json else ("--no-write-json",))]
        lock_path = self.work_dir / "target" / ".session_parse.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        # Processes sharing a work folder (Dagster runs of one warehouse) never read a partial
        # parse file that another is writing.
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            run, result = self._invoke(["parse", *flags], None, None, manifest=None)
        if isinstance(result, Manifest):
            self._manifest, self._parsed_mtime = result, mtime
        return run

    def invoke(self, args: Sequence[str], window_env: Mapping[str, str] | None = None,
               on_node_result: Callable[[dict[str, Any]], None] | None = None) -> DbtRun:
        """Run ``dbt <args>`` on the session's manifest; results come back in memory.

        Parameters
        ----------
        args
            The command and its flags, e.g. ``["build", "--select", "marts"]``; ``parse``
            parses again (and writes manifest.json, as the CLI does).
        window_env
            The panel window (:func:`panel_env`), set in the environment for this command only.
        on_node_result
            Called, on dbt's worker thread, with the JSON log event (``{"info", "data"}``, the
            form of ``dbt --log-format json``) of every finished node: model, test, seed.
        """
        if args and args[0] == "parse":
            return self.parse(args[1:])
        try:
            manifest = self.manifest()
        except WarehouseError as e:
            return DbtRun(2, str(e), "", {})
        return self._invoke([*args, *self._paths(), *_RUN_FLAGS], window_env, on_node_result, manifest)[0]

    def _invoke(self, args: list[str], window_env: Mapping[str, str] | None,
                on_node_result: Callable[[dict[str, Any]], None] | None, manifest: Manifest | None) -> tuple[DbtRun, Any]:
        from dbt.cli.main import dbtRunner
        from dbt_common.events.functions import msg_to_dict

        lines: list[str] = []

        def on_event(msg: Any) -> None:
            info = msg.info
            if info.level in ("info", "warn", "error") and info.msg:
                lines.append(f"{time.strftime('%H:%M:%S')}  {info.msg}")
            if on_node_result is not None and info.name in NODE_RESULT_EVENTS:
                on_node_result(msg_to_dict(msg))

        env = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **self.target_env, **(window_env or {})}
        # A parse opens no connection; any other command on DuckDB holds the warehouse lock.
        database = _duckdb_database(self.target_env) if manifest is not None else None
        with _DBT_LOCK, scoped_environment(env), _warehouse_lock(database):
            try:
                res = dbtRunner(manifest=manifest, callbacks=[on_event]).invoke(args)
            finally:
                _close_duckdb()
        stderr = "".join(traceback.format_exception(res.exception)) if res.exception is not None else ""
        # dbt's messages reach the console and Dagster's event log: never with the password.
        secrets = target_secrets(self.target_env)
        lines, stderr = [redact_text(line, secrets) for line in lines], redact_text(stderr, secrets)
        results: dict[str, dict[str, Any]] = {}
        run_results = getattr(res.result, "results", None)
        if run_results is not None:
            from dbt.artifacts.schemas.run import process_run_result

            for r in run_results:
                out = process_run_result(r).to_dict(omit_none=False)
                results[_node_name(out["unique_id"])] = out
        returncode = 0 if res.success else 2 if res.exception is not None else 1
        if database and returncode:
            _raise_if_locked(database, [stderr, *lines, *(str(r.get("message") or "") for r in results.values())])
        return DbtRun(returncode, "\n".join(lines), stderr, results), res.result


_SESSIONS: OrderedDict[tuple[tuple[tuple[str, str], ...], str], DbtSession] = OrderedDict()
_SESSIONS_LOCK = threading.Lock()


def dbt_session(target_env: Mapping[str, str], work_dir: str | Path) -> DbtSession:
    """This process's :class:`DbtSession` for a warehouse and work folder (the last few are kept)."""
    key = (tuple(sorted(target_env.items())), str(Path(work_dir).resolve()))
    with _SESSIONS_LOCK:
        session = _SESSIONS.pop(key, None) or DbtSession(target_env, work_dir)
        _SESSIONS[key] = session
        while len(_SESSIONS) > _SESSIONS_KEPT:
            _SESSIONS.popitem(last=False)
        return session


def run_dbt(
    args: Sequence[str],
    target_env: Mapping[str, str],
    work_dir: str | Path,
    window_env: Mapping[str, str] | None = None,
) -> DbtRun:
    """Run ``dbt <args>`` on the project with its own profiles, in this process.

    ``target_env`` points the profile at a warehouse (:func:`dbt_target_env`), ``window_env``
    sets the panel window (:func:`panel_env`). ``work_dir`` holds the target and log folders,
    so concurrent runs never share a manifest while one caller's runs reuse its parse: the
    first command of a (warehouse, work_dir) in a process parses, the next ones do not
    (:func:`dbt_session`).
    """
    return dbt_session(target_env, work_dir).invoke(args, window_env)
