"""The DuckDB warehouse lock: who holds it, a bounded wait, a dead holder's file, re-entrancy,
and DuckDB's own file lock turned into the same one-line error."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prometheus_lib.errors import ConfigError, WarehouseError, WarehouseLockedError
from prometheus_lib.storage import lock
from prometheus_lib.storage.factory import open_warehouse

ROOT = Path(__file__).resolve().parents[3]


def _holder(database: Path, command: str = "holder test", hold_s: float = 60.0) -> subprocess.Popen:
    """Another process that takes the warehouse lock, says so, and holds it for ``hold_s``."""
    code = (f"import time; from prometheus_lib.storage import lock; lock.acquire({str(database)!r}, command={command!r}); "
            f"print('held', flush=True); time.sleep({hold_s})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


def _other_process_can_lock(database: Path) -> bool:
    code = f"from prometheus_lib.storage import lock; lock.acquire({str(database)!r}, wait=0)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60).returncode == 0


def test_acquire_writes_holder_line_and_release_empties_it(tmp_path: Path) -> None:
    # Arrange
    db = tmp_path / "wh" / "prometheus.duckdb"

    # Act
    holder = lock.acquire(db, wait=0, command="prometheus ingest --start 2024-01-02")
    line = json.loads(lock.lock_path(db).read_text())
    lock.release(db)

    # Assert
    assert lock.lock_path(db) == tmp_path / "wh" / "prometheus.duckdb.lock"
    assert line == {"pid": os.getpid(), "host": socket.gethostname(), "command": "prometheus ingest --start 2024-01-02",
                    "since": holder.since}
    assert lock.lock_path(db).read_text() == ""
    assert not lock.held_here(db)


def test_acquire_with_another_holder_and_no_wait_raises_one_line_naming_it(tmp_path: Path) -> None:
    # Arrange
    db = tmp_path / "prometheus.duckdb"
    proc = _holder(db, command="prometheus ingest --start 2024-01-02 --end 2024-03-28")
    try:
        # Act
        t0 = time.monotonic()
        with pytest.raises(WarehouseLockedError) as caught:
            lock.acquire(db, wait=0)
        seconds = time.monotonic() - t0
    finally:
        _stop(proc)

    # Assert: refused at once, one line: the file, the holder's pid, command and start
    message = str(caught.value)
    assert seconds < 10  # at once, not after a wait (a loose bound: the machine is shared)
    assert "\n" not in message
    assert f"warehouse {db} is in use by pid {proc.pid} (prometheus ingest --start 2024-01-02 --end 2024-03-28, since " in message
    assert "--wait SECONDS" in message and "waited" not in message
    assert isinstance(caught.value, WarehouseError)
    assert not lock.held_here(db)


def test_acquire_with_bounded_wait_says_whom_it_waits_for_then_raises(tmp_path: Path) -> None:
    # Arrange
    db = tmp_path / "prometheus.duckdb"
    proc = _holder(db)
    told: list[str] = []
    try:
        # Act
        t0 = time.monotonic()
        with pytest.raises(WarehouseLockedError, match=r"in use by pid \d+ \(holder test, since .*\) \(waited 1 s\)"):
            lock.acquire(db, wait=0.8, on_wait=told.append)
        seconds = time.monotonic() - t0
    finally:
        _stop(proc)

    # Assert
    assert 0.8 <= seconds < 10
    assert len(told) == 1
    assert told[0].startswith(f"waiting up to 1 s for the warehouse lock of {db}, held by pid {proc.pid} (holder test, since ")


def test_acquire_with_wait_gets_the_lock_when_the_holder_ends(tmp_path: Path) -> None:
    # Arrange: a holder that lets go after half a second
    db = tmp_path / "prometheus.duckdb"
    proc = _holder(db, hold_s=0.5)

    # Act
    t0 = time.monotonic()
    holder = lock.acquire(db, wait=30, command="second")
    seconds = time.monotonic() - t0
    lock.release(db)
    proc.wait(timeout=30)

    # Assert
    assert holder.pid == os.getpid() and holder.command == "second"
    assert seconds < 10


def test_acquire_after_holder_killed_is_not_blocked_by_its_stale_line(tmp_path: Path) -> None:
    # Arrange: a holder killed with SIGKILL leaves its line in the file
    db = tmp_path / "prometheus.duckdb"
    proc = _holder(db, command="killed command")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert lock.read_holder(db).command == "killed command"

    # Act
    t0 = time.monotonic()
    holder = lock.acquire(db, wait=0, command="next command")
    try:
        # Assert: at once, and the line is ours now
        assert time.monotonic() - t0 < 1
        assert lock.read_holder(db) == holder
    finally:
        lock.release(db)


def test_acquire_twice_in_one_process_is_reentrant_until_the_last_release(tmp_path: Path) -> None:
    # Arrange
    db = tmp_path / "prometheus.duckdb"

    # Act / Assert: the second hold costs nothing and keeps the first holder line
    first = lock.acquire(db, wait=0, command="outer")
    second = lock.acquire(db, wait=0, command="inner")
    assert second == first and lock.read_holder(db).command == "outer"
    lock.release(db)
    assert lock.held_here(db) and not _other_process_can_lock(db)
    lock.release(db)
    assert not lock.held_here(db) and _other_process_can_lock(db)


def test_duckdb_warehouse_holds_the_lock_while_open_and_reenters_a_command_lock(tmp_path: Path) -> None:
    # Arrange
    db = tmp_path / "prometheus.duckdb"

    # Act / Assert: a warehouse opened alone holds the file until closed
    with open_warehouse("duckdb", duckdb_path=str(db)):
        assert lock.held_here(db) and not _other_process_can_lock(db)
    assert not lock.held_here(db)
    # inside a command's lock, opening and closing warehouses keeps the command's hold
    with lock.warehouse_lock(db, wait=0, command="prometheus ingest"):
        with open_warehouse("duckdb", duckdb_path=str(db)):
            pass
        assert lock.held_here(db) and lock.read_holder(db).command == "prometheus ingest"
    assert _other_process_can_lock(db)


def test_open_warehouse_with_lock_held_elsewhere_raises_one_line_naming_the_holder(tmp_path: Path) -> None:
    # Arrange
    db = tmp_path / "prometheus.duckdb"
    proc = _holder(db, command="prometheus backtest --strategy US_CORE_LONG_EQ")
    try:
        # Act
        with pytest.raises(WarehouseLockedError) as caught:
            open_warehouse("duckdb", duckdb_path=str(db), lock_wait=0)
    finally:
        _stop(proc)

    # Assert
    assert f"pid {proc.pid} (prometheus backtest --strategy US_CORE_LONG_EQ, since " in str(caught.value)
    assert not lock.held_here(db)


def test_open_warehouse_with_file_held_by_a_plain_duckdb_process_raises_one_line_naming_it(tmp_path: Path) -> None:
    # Arrange: a process outside the warehouse lock (a DuckDB shell, a notebook) holds the file
    db = tmp_path / "prometheus.duckdb"
    script = tmp_path / "notebook_marker.py"
    script.write_text(f"import duckdb, time\ncon = duckdb.connect({str(db)!r})\nprint('held', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    try:
        # Act
        with pytest.raises(WarehouseLockedError) as caught:
            open_warehouse("duckdb", duckdb_path=str(db), lock_wait=0.5)
    finally:
        _stop(proc)

    # Assert: DuckDB's pid, that process's command line, no IO Error text, no DuckDB cause
    message = str(caught.value)
    assert f"is in use by pid {proc.pid} (" in message and "notebook_marker.py" in message
    assert "IO Error" not in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert not lock.held_here(db)


def test_lock_wait_seconds_reads_the_environment_and_rejects_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lock.LOCK_WAIT_ENV, raising=False)
    assert lock.lock_wait_seconds() == 0
    monkeypatch.setenv(lock.LOCK_WAIT_ENV, "2.5")
    assert lock.lock_wait_seconds() == 2.5
    assert lock.lock_wait_seconds("10") == 10
    monkeypatch.setenv(lock.LOCK_WAIT_ENV, "soon")
    with pytest.raises(ConfigError, match="PROMETHEUS_LOCK_WAIT: expected a number of seconds >= 0, was 'soon'"):
        lock.lock_wait_seconds()
    with pytest.raises(ConfigError, match="--wait: expected a number of seconds >= 0, was '-1'"):
        lock.lock_wait_seconds("-1")


def test_forked_child_holds_nothing_and_leaves_the_parents_lock_and_line(tmp_path: Path) -> None:
    # Arrange
    db = tmp_path / "prometheus.duckdb"
    lock.acquire(db, command="parent command")
    try:
        # Act: a child forked while the parent holds the lock gives "its" hold back
        pid = os.fork()
        if pid == 0:  # the child
            code = 0 if not lock.held_here(db) else 1
            lock.release(db)
            os._exit(code)
        _, status = os.waitpid(pid, 0)

        # Assert: the child knew it held nothing; the parent still holds the lock and its line
        assert os.waitstatus_to_exitcode(status) == 0
        assert lock.held_here(db) and not _other_process_can_lock(db)
        assert lock.read_holder(db).command == "parent command"
    finally:
        lock.release(db)
    assert _other_process_can_lock(db)
