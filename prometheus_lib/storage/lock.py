"""One writer at a time on an embedded DuckDB warehouse: the warehouse lock.

DuckDB lets one process hold a read-write handle on a database file (a second process gets
``IO Error: Could not set lock on file ...``), and a process that holds a ``read_only`` handle
keeps writers out just as well. A Prometheus command opens and closes the file many times in
one run (every step, check and dbt command), so without a lock of its own a second command
could take the file between two steps of the first and either command would fail at a random
step. The warehouse lock is a command-level lock around all of that:

- an exclusive ``flock`` on ``<database>.lock`` next to the DuckDB file (``prometheus.duckdb.lock``),
  whose content is one JSON line naming the holder (pid, host, command, since when);
- taken for a whole ``prometheus`` command that writes, for a whole Dagster run launched by the
  UI (the warehouse resource's set-up), and by every :class:`DuckDBWarehouse` and dbt-duckdb
  command (re-entrant in the process that holds it, so those cost nothing inside a command);
- released by the kernel when the holder's process ends, however it ends: a ``kill -9`` leaves
  the file with its last holder's line, which never blocks anyone (the lock is the ``flock``,
  not the file's existence);
- a second process waits at most ``wait`` seconds (``--wait`` on the command line, else
  ``PROMETHEUS_LOCK_WAIT``, default 0: refused at once), saying who it waits for, and then
  raises :class:`~prometheus_lib.errors.WarehouseLockedError`, one line naming the holder.

PostgreSQL needs none of this: concurrent runs of different run ids are safe there (each write
is one transaction scoped by its run id), so the lock applies to DuckDB files only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from prometheus_lib.errors import ConfigError, WarehouseLockedError

LOCK_WAIT_ENV = "PROMETHEUS_LOCK_WAIT"
LOCK_SUFFIX = ".lock"
# DuckDB's own message when another process holds the file.
DUCKDB_LOCK_MESSAGE = "Could not set lock on file"
_DUCKDB_PID = re.compile(r"\(PID (\d+)\)")
_POLL_S = 0.1
_COMMAND_CHARS = 160

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a warehouse lock: process id, host, what it runs and since when (UTC, ISO)."""

    pid: int
    host: str
    command: str
    since: str

    def describe(self) -> str:
        """``pid 1234 (prometheus ingest --start ..., since 2026-12-03 10:01:02 UTC)``."""
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        since = self.since.replace("T", " ").replace("+00:00", " UTC")
        return f"pid {self.pid}{where} ({self.command}, since {since})"

    def to_json(self) -> str:
        """The lock file's line."""
        return json.dumps({"pid": self.pid, "host": self.host, "command": self.command, "since": self.since})


def lock_path(database: str | Path) -> Path:
    """The lock file of a DuckDB database file: ``<database>.lock`` beside it."""
    return Path(str(database) + LOCK_SUFFIX)


def _key(database: str | Path) -> str:
    return os.path.realpath(str(database))


def current_command() -> str:
    """What this process runs, for the lock file: its command line, shortened."""
    argv = list(sys.argv) or [sys.executable]
    argv[0] = Path(argv[0]).name
    text = " ".join(argv)
    return text if len(text) <= _COMMAND_CHARS else text[: _COMMAND_CHARS - 3] + "..."


def lock_wait_seconds(value: float | str | None = None) -> float:
    """The bound on waiting for the lock: ``value`` if given, else ``PROMETHEUS_LOCK_WAIT``, else 0.

    Raises
    ------
    ConfigError
        If the value is not a number of seconds >= 0.
    """
    source = "--wait" if value is not None else LOCK_WAIT_ENV
    raw = value if value is not None else os.environ.get(LOCK_WAIT_ENV, "").strip() or 0
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{source}: expected a number of seconds >= 0, was {raw!r}")
    return seconds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(database: str | Path) -> LockHolder | None:
    """The holder line of ``database``'s lock file, or None (no file, empty, unreadable).

    The line is the last holder's: it stays after a holder dies. Use :func:`current_holder`
    for who holds it now.
    """
    try:
        text = lock_path(database).read_text().strip()
        doc = json.loads(text)
        return LockHolder(int(doc["pid"]), str(doc["host"]), str(doc["command"]), str(doc["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _proc_command(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if not argv:
        return None
    argv[0] = Path(argv[0]).name
    text = " ".join(argv)
    return text if len(text) <= _COMMAND_CHARS else text[: _COMMAND_CHARS - 3] + "..."


def current_holder(database: str | Path, pid: int | None = None, settle_s: float = 0.5) -> str:
    """Describe who holds ``database`` now, in words, for a message.

    The lock file's line when its process is alive (a new holder writes its line just after
    taking the lock: retried for ``settle_s``); else, when ``pid`` is known (from DuckDB's own
    message), that process's command line; else "another process".
    """
    deadline = time.monotonic() + settle_s
    while True:
        holder = read_holder(database)
        if holder is not None and (holder.host != socket.gethostname() or _alive(holder.pid)) \
                and (pid is None or holder.pid == pid):
            return holder.describe()
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if pid is not None:
        command = _proc_command(pid)
        return f"pid {pid} ({command})" if command else f"pid {pid}"
    return "another process"


def locked_error(database: str | Path, waited: float = 0.0, duckdb_message: str | None = None) -> WarehouseLockedError:
    """The one-line error for a warehouse another process holds (naming it)."""
    pid = None
    if duckdb_message and (m := _DUCKDB_PID.search(duckdb_message)):
        pid = int(m.group(1))
    who = current_holder(database, pid)
    after = f" (waited {waited:.0f} s)" if waited > 0 else ""
    return WarehouseLockedError(
        f"warehouse {database} is in use by {who}{after}: DuckDB allows one writing process; "
        f"wait for it to finish, or queue behind it with --wait SECONDS ({LOCK_WAIT_ENV})"
    )


@dataclass
class _Held:
    fd: int
    count: int
    holder: LockHolder


_HELD: dict[str, _Held] = {}
_REGISTRY = threading.RLock()


def held_here(database: str | Path) -> bool:
    """Whether this process holds the warehouse lock of ``database``."""
    with _REGISTRY:
        return _key(database) in _HELD


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def acquire(
    database: str | Path,
    wait: float | None = None,
    command: str | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> LockHolder:
    """Take the warehouse lock of ``database`` for this process (re-entrant: counted).

    Parameters
    ----------
    database
        The DuckDB file (it need not exist yet; its folder is created).
    wait
        Seconds to wait for another holder (None: :func:`lock_wait_seconds`, i.e.
        ``PROMETHEUS_LOCK_WAIT`` or 0).
    command
        What this process runs, for the holder line (default: its command line).
    on_wait
        Called once with a line saying who is waited for, when waiting starts (default: a
        log warning).

    Raises
    ------
    WarehouseLockedError
        If another process still holds it after ``wait`` seconds; the message names it.
    """
    key = _key(database)
    with _REGISTRY:
        held = _HELD.get(key)
        if held is not None:
            held.count += 1
            return held.holder
        bound = lock_wait_seconds() if wait is None else max(0.0, float(wait))
        path = lock_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            t0 = time.monotonic()
            told = False
            while not _try_flock(fd):
                waited = time.monotonic() - t0
                if waited >= bound:
                    raise locked_error(database, waited if bound > 0 else 0.0)
                if not told:
                    told = True
                    line = (f"waiting up to {bound:.0f} s for the warehouse lock of {database}, "
                            f"held by {current_holder(database)}")
                    (on_wait or log.warning)(line)
                time.sleep(min(_POLL_S, max(0.0, bound - waited)))
            holder = LockHolder(os.getpid(), socket.gethostname(), command or current_command(),
                                datetime.now(timezone.utc).replace(microsecond=0).isoformat())
            os.ftruncate(fd, 0)
            os.pwrite(fd, (holder.to_json() + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        _HELD[key] = _Held(fd, 1, holder)
        return holder


def _forget_in_child() -> None:
    """After ``fork`` the child holds nothing: the parent's holds are the parent's (closing the
    child's copies of the descriptors leaves the parent's flock in place)."""
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def release(database: str | Path) -> None:
    """Give back one hold of the lock; the last one empties the holder line and unlocks."""
    key = _key(database)
    with _REGISTRY:
        held = _HELD.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.ftruncate(held.fd, 0)
        os.close(held.fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def warehouse_lock(
    database: str | Path,
    wait: float | None = None,
    command: str | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[LockHolder]:
    """Hold the warehouse lock of ``database`` inside the block (see :func:`acquire`)."""
    holder = acquire(database, wait=wait, command=command, on_wait=on_wait)
    try:
        yield holder
    finally:
        release(database)


def is_duckdb_lock_error(error: BaseException | str) -> bool:
    """Whether an error (or its text) is DuckDB's "another process holds the file"."""
    return DUCKDB_LOCK_MESSAGE in str(error)
