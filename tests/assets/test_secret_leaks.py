"""The warehouse password, planted in every libpq connection string form, leaks nowhere.

Real ``prometheus`` commands (ingestion, then the dbt panels) run on one PostgreSQL warehouse
reached through a URL with userinfo, a URL with query parameters and a key=value DSN, each with
its own distinctive password (trust authentication accepts any). Then no console line, no file
under PROMETHEUS_HOME and DAGSTER_HOME (SQLite event logs, dbt work folders and logs, byte for
byte) and no Dagster event holds any of them, plain, percent-encoded or escaped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict
from providers import ROOT, make_config_dir

from prometheus_lib.security import redact_dsn
from prometheus_lib.storage.dbt import dbt_target_env

BIN = Path(sys.executable).parent
START, END = "2024-01-02", "2024-01-08"  # 5 sessions
SPECIALS = " /@:?&=#'\\%x"  # every character a connection string treats specially


def _password(core: str) -> str:
    return f"{core}{SPECIALS}"


def _kv_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _forms(pg_url: str) -> list[tuple[str, str, str, str]]:
    """(core, password, connection string, command) for each form; the cores need no encoding."""
    p = conninfo_to_dict(pg_url)
    host, port, user, db = p.get("host", "127.0.0.1"), p.get("port", "5432"), p.get("user", "postgres"), p["dbname"]
    forms = []
    core = "Zq9LeakUserinfo"
    pw = _password(core)
    forms.append((core, pw, f"postgres://{user}:{quote(pw, safe='')}@{host}:{port}/{db}", "ingest"))
    core = "Zq9LeakQuery"
    pw = _password(core)
    forms.append((core, pw, f"postgresql:///{db}?host={host}&port={port}&user={user}&password={quote(pw, safe='')}",
                  "panels"))
    core = "Zq9LeakKeyValue"
    pw = _password(core)
    forms.append((core, pw, f"host={host} port={port} user={user} dbname={db} password = {_kv_quote(pw)}", "panels"))
    return forms


def _variants(core: str, password: str) -> list[bytes]:
    """The planted password as any file or message could hold it; the core alone catches the rest."""
    enc = quote(password, safe="")
    texts = {core, password, enc, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), enc),
             quote(password, safe="/"), json.dumps(password)[1:-1], repr(password)[1:-1]}
    out = {t.encode() for t in texts}
    out |= {t.encode("utf-16-le") for t in texts}
    return sorted(out)


def _env(tmp_path: Path, config_dir: Path, conninfo: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "PROMETHEUS_"))}
    env.update(PROMETHEUS_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "home" / "dagster"),
               PROMETHEUS_CONFIG_DIR=str(config_dir), PROMETHEUS_WAREHOUSE_URL=conninfo)
    return env


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.xdist_group("secret_leaks")
def test_runs_with_password_in_every_form_leak_it_to_no_console_file_or_event(tmp_path, pg_databases):
    # Arrange
    import dagster as dg
    from dagster._serdes import serialize_value

    config_dir = make_config_dir(tmp_path)
    forms = _forms(pg_databases.create("prom_secrets"))
    home = tmp_path / "home"

    # Act: ingestion through the first form, the dbt panels through each other one, one home
    console: dict[str, str] = {}
    for core, _, conninfo, command in forms:
        t0 = time.perf_counter()
        proc = subprocess.run([str(BIN / "prometheus"), command, "--start", START, "--end", END],
                              cwd=ROOT, env=_env(tmp_path, config_dir, conninfo), capture_output=True,
                              text=True, timeout=240)
        console[core] = proc.stdout + proc.stderr
        took = time.perf_counter() - t0
        assert proc.returncode == 0, f"{command} with the {core} form ({took:.1f} s):\n{console[core]}"

    # Assert: the console
    for core, password, _, _ in forms:
        for v in _variants(core, password):
            for name, text in console.items():
                assert v not in text.encode(), f"{core}'s password ({v!r}) on the console of the {name} run"
    for core, _, conninfo, _ in forms:  # each run used its form, and its summary names it redacted
        assert f"Warehouse: {redact_dsn(conninfo)}" in console[core]

    # every file under PROMETHEUS_HOME and DAGSTER_HOME, byte for byte
    files = [f for f in home.rglob("*") if f.is_file()]
    assert any(f.suffix == ".db" for f in files) and any("dbt" in f.parts for f in files)
    for f in files:
        data = f.read_bytes()
        for core, password, _, _ in forms:
            for v in _variants(core, password):
                assert v not in data, f"{core}'s password ({v!r}) in {f.relative_to(tmp_path)}"

    # the dbt work folder is named by the warehouse, not its password: the panel runs, whose
    # passwords differ, shared one (and its partial parse)
    assert len(list((home / "dbt").iterdir())) == 1

    # every Dagster event and run, as the UI reads them
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs()
        assert len(runs) == len(forms)
        records = [serialize_value(r) for r in runs]
        for run in runs:
            records += [serialize_value(e) for e in instance.all_logs(run.run_id)]
    text = "\n".join(records).encode()
    for core, password, conninfo, command in forms:
        for v in _variants(core, password):
            assert v not in text, f"{core}'s password ({v!r}) in a Dagster event"
        if command == "ingest":  # the materialisations' "warehouse" metadata was recorded, redacted
            assert json.dumps(redact_dsn(conninfo))[1:-1].encode() in text, f"no event names the {core} warehouse"


@pytest.mark.parametrize("conninfo", [
    "postgresql://postgres:Zq9LeakRefused%2Fx@127.0.0.1:1/prom",     # unreachable port
    "postgresql://postgres:Zq9LeakSlash/xtail@127.0.0.1:5432/prom",  # "/" unencoded: libpq misreads it
])
def test_migrate_with_unreachable_warehouse_names_it_redacted(tmp_path, conninfo):
    # Act
    proc = subprocess.run([str(BIN / "prometheus"), "migrate"], cwd=ROOT, capture_output=True, text=True,
                          env=_env(tmp_path, make_config_dir(tmp_path), conninfo), timeout=120)

    # Assert: the error names the warehouse, never its password
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Zq9Leak" not in out and "xtail" not in out
    assert f"cannot connect to PostgreSQL warehouse {redact_dsn(conninfo)}: " in proc.stderr


def test_warehouse_work_dir_is_named_by_non_secret_parts_only(tmp_path):
    from prometheus_assets.assets.panels import warehouse_work_dir

    def work(conninfo: str) -> Path:
        return warehouse_work_dir(dbt_target_env("postgres", postgres_url=conninfo), tmp_path)

    base = work("postgresql://postgres:one@127.0.0.1:5432/prom")
    # the same warehouse whatever its password and however it is written: one folder, stable
    assert work("postgresql://postgres:two@127.0.0.1:5432/prom") == base
    assert work("host=127.0.0.1 port=5432 user=postgres dbname=prom password='three'") == base
    assert work("postgresql:///prom?host=127.0.0.1&user=postgres") == base
    assert base == work("postgresql://postgres:one@127.0.0.1:5432/prom")
    # another warehouse: another folder
    assert work("postgresql://postgres:one@127.0.0.1:5432/other") != base
    assert work("postgresql://alice:one@127.0.0.1:5432/prom") != base
    assert base.parent == tmp_path and base.name.startswith("postgres-")
