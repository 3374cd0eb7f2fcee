"""The warehouse password never reaches what the platform shows: every libpq connection string form.

``prometheus_lib.security`` redacts URL userinfo (passwords holding ``/``, ``@``, ``:`` or
percent-encoded characters too), query ``password=`` parameters and key=value DSNs (quoted,
escaped); the warehouse's location, its connection errors and dbt's profile all go through it.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import psycopg
import pytest

from prometheus_lib.errors import WarehouseError
from prometheus_lib.security import REDACTED, dsn_secrets, redact_dsn, redact_error, redact_text
from prometheus_lib.storage.dbt import DbtSession, dbt_target_env
from prometheus_lib.storage.warehouse import PostgresWarehouse

CORE = "Zq9SecretCore"  # in every planted password; needs no encoding, so any leak contains it


def _variants(password: str) -> list[str]:
    """The ways a password can be written: as is, percent-encoded (both hex cases), JSON-escaped."""
    enc = quote(password, safe="")
    lower_hex = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), enc)
    return [password, enc, lower_hex, quote(password, safe="/"), json.dumps(password)[1:-1], CORE]


def _assert_hidden(text: str, password: str) -> None:
    for v in _variants(password):
        assert v not in text, f"{v!r} leaked in {text!r}"


# ------------------------------------------------------------------ redact_dsn: every form
REDACT_CASES = [
    # URL userinfo
    ("postgresql://postgres:Zq9SecretCore@127.0.0.1:5432/prom",
     "postgresql://postgres:***@127.0.0.1:5432/prom", "Zq9SecretCore"),
    ("postgres://postgres:Zq9SecretCore@db.example:6543/prom",
     "postgres://postgres:***@db.example:6543/prom", "Zq9SecretCore"),
    ("postgresql+psycopg://postgres:Zq9SecretCore@h/prom",
     "postgresql+psycopg://postgres:***@h/prom", "Zq9SecretCore"),
    # userinfo with "/", "@", ":" and "?" unencoded (libpq misreads them), and percent-encoded
    ("postgresql://u:Zq9SecretCore/tail@127.0.0.1:5432/prom",
     "postgresql://u:***@127.0.0.1:5432/prom", "Zq9SecretCore/tail"),
    ("postgresql://u:Zq9SecretCore@tail@127.0.0.1/prom",
     "postgresql://u:***@127.0.0.1/prom", "Zq9SecretCore@tail"),
    ("postgresql://u:Zq9SecretCore:tail?x@127.0.0.1/prom?sslmode=disable",
     "postgresql://u:***@127.0.0.1/prom?sslmode=disable", "Zq9SecretCore:tail?x"),
    ("postgresql://u:Zq9SecretCore%2F%40%3A%20x@127.0.0.1/prom",
     "postgresql://u:***@127.0.0.1/prom", "Zq9SecretCore/@: x"),
    ("postgresql://u:@127.0.0.1/prom", "postgresql://u:***@127.0.0.1/prom", ""),
    # query parameters (the key percent-decoded as libpq does), with and without userinfo
    ("postgresql:///prom?host=127.0.0.1&password=Zq9SecretCore&port=5432",
     "postgresql:///prom?host=127.0.0.1&password=***&port=5432", "Zq9SecretCore"),
    ("postgresql:///prom?host=127.0.0.1&pass%77ord=Zq9SecretCore%26x",
     "postgresql:///prom?host=127.0.0.1&pass%77ord=***", "Zq9SecretCore&x"),
    ("postgresql://u:Zq9SecretCore@h/prom?sslpassword=Zq9SecretCore&sslmode=require",
     "postgresql://u:***@h/prom?sslpassword=***&sslmode=require", "Zq9SecretCore"),
    ("postgresql://h/prom?password=Zq9SecretCore&application_name=a@b",
     "postgresql://h/prom?password=***&application_name=a@b", "Zq9SecretCore"),
    # key=value DSN: unquoted, quoted with spaces and escapes, spaces around "=", unterminated
    ("host=127.0.0.1 user=postgres password=Zq9SecretCore dbname=prom",
     "host=127.0.0.1 user=postgres password=*** dbname=prom", "Zq9SecretCore"),
    ("host=127.0.0.1 password='Zq9SecretCore with \\'quotes\\' and \\\\' dbname=prom",
     "host=127.0.0.1 password='***' dbname=prom", "Zq9SecretCore with 'quotes' and \\"),
    ("dbname = prom  password =  Zq9SecretCore\\ x  port=5432",
     "dbname = prom  password =  ***  port=5432", "Zq9SecretCore x"),
    ("host=h PASSWORD=Zq9SecretCore", "host=h PASSWORD=***", "Zq9SecretCore"),
    ("host=h password='Zq9SecretCore unterminated", "host=h password='***'", "Zq9SecretCore unterminated"),
    ("host=h password=Zq9SecretCore tail", "host=h password=*** ***", "Zq9SecretCore tail"),
    # no password at all: unchanged
    ("postgresql://postgres@127.0.0.1:5432/prom", "postgresql://postgres@127.0.0.1:5432/prom", ""),
    ("postgresql:///prom?host=/var/run/postgresql", "postgresql:///prom?host=/var/run/postgresql", ""),
    ("host=127.0.0.1 port=5432 dbname=prom", "host=127.0.0.1 port=5432 dbname=prom", ""),
    ("", "", ""),
]


@pytest.mark.parametrize(("conninfo", "expected", "password"), REDACT_CASES)
def test_redact_dsn_with_each_form_hides_the_password_and_keeps_the_rest(conninfo, expected, password):
    # Act
    shown = redact_dsn(conninfo)

    # Assert
    assert shown == expected
    if password:
        _assert_hidden(shown, password)


def test_redact_dsn_with_at_sign_in_query_over_redacts_never_under_redacts():
    shown = redact_dsn("postgresql://u:Zq9SecretCore@h/prom?application_name=a@b")
    assert CORE not in shown and shown.startswith("postgresql://u:***@")


@pytest.mark.parametrize(("conninfo", "_expected", "password"), [c for c in REDACT_CASES if c[2]])
def test_dsn_secrets_with_each_form_finds_the_password_redact_text_scrubs_it(conninfo, _expected, password):
    # Arrange: an error message that echoes the password in every encoding, and the string itself
    text = f"failed for {conninfo!r}: " + " | ".join(_variants(password)) + f" | {json.dumps({'dsn': conninfo})}"

    # Act
    secrets = dsn_secrets(conninfo)
    scrubbed = redact_text(text, secrets)

    # Assert
    assert password in secrets or password.split() == secrets  # a malformed DSN's pieces
    _assert_hidden(scrubbed, password)
    assert REDACTED in scrubbed


def test_redact_text_with_pieces_of_a_misparsed_password_scrubs_each_piece():
    # libpq reads "u:Zq9SecretCore/tail9@h" as host "u", port "Zq9SecretCore": it names the pieces
    text = "invalid integer value \"Zq9SecretCore\" for connection option \"port\"; dbname \"tail9@h/db\""
    scrubbed = redact_error(text, "postgresql://u:Zq9SecretCore/tail9@h/db")
    assert CORE not in scrubbed and "tail9" not in scrubbed


def test_redact_text_with_short_secret_scrubs_it_only_where_it_stands_alone():
    assert redact_text("password for user p: 'p' rejected", ["p"]) == "password for user ***: '***' rejected"


def test_redact_text_with_embedded_connection_strings_redacts_them_without_known_secrets():
    text = ('missing "=" after "postgresql+psycopg://u:Zq9SecretCore@h/db" in connection info string; '
            "or host=h password='Zq9SecretCore x' dbname=d; or ?password=Zq9SecretCore&x=1; "
            "or PGPASSWORD=Zq9SecretCore, PROMETHEUS_PG_PASSWORD=Zq9SecretCore")
    scrubbed = redact_text(text)
    assert CORE not in scrubbed and "PGPASSWORD=***" in scrubbed and "PROMETHEUS_PG_PASSWORD=***" in scrubbed
    assert redact_text("passwordless=no password_file=x") == "passwordless=no password_file=x"


# ------------------------------------------------------------------ connection errors
@pytest.mark.parametrize("conninfo", [
    "postgresql://postgres:Zq9SecretCore%2Fx@127.0.0.1:1/prom",                       # unreachable port
    "postgresql://postgres:Zq9SecretCore/xtail@127.0.0.1:5432/prom",                  # "/" unencoded
    "postgresql://postgres:Zq9SecretCore@xtail@127.0.0.1:5432/prom",                  # "@" unencoded
    "postgresql:///prom?host=127.0.0.1&port=1&password=Zq9SecretCore",                # query form
    "host=127.0.0.1 port=1 dbname=prom password='Zq9SecretCore x'",                   # key=value DSN
    "host=127.0.0.1 port=1 dbname=prom password=Zq9SecretCore xtail",                 # malformed DSN
    "postgresql+psycopg://postgres:Zq9SecretCore@127.0.0.1:1/prom",                   # not libpq's scheme
])
def test_postgres_warehouse_with_failing_connection_names_redacted_location_only(conninfo):
    # Act
    with pytest.raises(WarehouseError) as info:
        PostgresWarehouse(conninfo)

    # Assert: the message names the warehouse, redacted, and libpq's reason, scrubbed
    message = str(info.value)
    assert message.startswith(f"cannot connect to PostgreSQL warehouse {redact_dsn(conninfo)}: ")
    assert CORE not in message and "xtail" not in message
    # the driver's exception (whose text may hold the string) travels with no error
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert CORE not in repr(info.value.args)


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["userinfo", "query", "keyvalue"])
def test_postgres_warehouse_with_password_in_each_form_connects_and_shows_no_password(form, pg_url):
    # Arrange: trust authentication accepts any password
    dbname = pg_url.rsplit("/", 1)[1]
    password = f"{CORE} /@:?&='\\x"
    conninfo = {
        "userinfo": f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:5432/{dbname}",
        "query": f"postgresql:///{dbname}?host=127.0.0.1&port=5432&user=postgres&password={quote(password, safe='')}",
        "keyvalue": "host=127.0.0.1 port=5432 user=postgres dbname={} password='{}'".format(
            dbname, password.replace("\\", "\\\\").replace("'", "\\'")),
    }[form]

    # Act
    wh = PostgresWarehouse(conninfo)
    try:
        location = wh.location
        assert wh.query("SELECT 1 AS one")["one"].to_list() == [1]
    finally:
        wh.close()

    # Assert
    _assert_hidden(location, password)
    assert dbname in location and REDACTED in location
    assert psycopg.conninfo.conninfo_to_dict(conninfo)["password"] == password  # planted as libpq reads it


# ------------------------------------------------------------------ dbt's profile
PASSWORD = f"{CORE} /@:?&='\\x"
ENCODED = quote(PASSWORD, safe="")
KV_PASSWORD = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")


@pytest.mark.parametrize("conninfo", [
    f"postgresql://alice:{ENCODED}@db.example:6543/prom",
    f"postgres://alice:{ENCODED}@db.example:6543/prom",
    f"postgresql:///prom?host=db.example&port=6543&user=alice&password={ENCODED}",
    f"postgresql://db.example:6543/prom?user=alice&pass%77ord={ENCODED}",
    f"host=db.example port=6543 user=alice dbname=prom password='{KV_PASSWORD}'",
    f"  dbname = prom host= db.example  port =6543 user=alice password='{KV_PASSWORD}'  ",
])
def test_dbt_target_env_with_each_form_reads_libpq_parameters(conninfo):
    env = dbt_target_env("postgres", postgres_url=conninfo)
    assert env == {
        "PROMETHEUS_DBT_TARGET": "postgres", "PROMETHEUS_PG_HOST": "db.example", "PROMETHEUS_PG_PORT": "6543",
        "PROMETHEUS_PG_USER": "alice", "PROMETHEUS_PG_PASSWORD": PASSWORD, "PROMETHEUS_PG_DBNAME": "prom",
    }


def test_dbt_target_env_without_password_or_port_uses_defaults():
    env = dbt_target_env("postgres", postgres_url="postgresql://alice@db.example")
    assert env["PROMETHEUS_PG_PASSWORD"] == "" and env["PROMETHEUS_PG_PORT"] == "5432"
    assert env["PROMETHEUS_PG_DBNAME"] == "alice"  # libpq's default database: the user's


@pytest.mark.parametrize("conninfo", [
    "postgresql://alice:Zq9SecretCore/xtail@db.example/prom",    # libpq: host "alice", port "Zq9SecretCore"
    "host=db.example password=Zq9SecretCore xtail",              # libpq: missing "=" after "xtail"
    "postgresql://alice:Zq9SecretCore@db.example:notaport/prom",
])
def test_dbt_target_env_with_unusable_string_raises_without_the_password(conninfo):
    with pytest.raises(WarehouseError) as info:
        dbt_target_env("postgres", postgres_url=conninfo)
    assert CORE not in str(info.value) and "xtail" not in str(info.value)
    assert info.value.__cause__ is None


def test_dbt_session_output_with_password_in_messages_is_scrubbed(monkeypatch, tmp_path):
    # Arrange: a dbt command whose console lines and traceback echo the profile's password
    env = dbt_target_env("postgres", postgres_url=f"postgresql://alice:{ENCODED}@db.example/prom")
    session = DbtSession(env, tmp_path)

    class Result:
        success, exception, result = False, RuntimeError(f"could not connect with {PASSWORD!r}"), None

    class Runner:
        def __init__(self, manifest, callbacks):
            self.callbacks = callbacks

        def invoke(self, args):
            class Info:
                level, msg, name = "error", f"connection failed: password {PASSWORD} / {ENCODED}", "X"

            for cb in self.callbacks:
                cb(type("Msg", (), {"info": Info})())
            return Result()

    monkeypatch.setattr("dbt.cli.main.dbtRunner", Runner)

    # Act
    run, _ = session._invoke(["debug"], None, None, manifest=None)  # noqa: SLF001

    # Assert
    assert run.returncode == 2 and "connection failed" in run.stdout and "could not connect" in run.stderr
    _assert_hidden(run.stdout + run.stderr, PASSWORD)
