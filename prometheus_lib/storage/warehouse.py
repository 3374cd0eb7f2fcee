"""The warehouse: one interface over DuckDB (embedded default) and PostgreSQL.

Every write of a session partition is atomic and idempotent: in one transaction the rows of
the partition (the table's session-date column between ``start`` and ``end``, narrowed by the
table's scope columns) are deleted and the new rows bulk-loaded (Arrow into DuckDB, ``COPY``
into PostgreSQL). A crash mid-write rolls back and leaves the previous rows; writing the same
partition twice leaves the same rows.
"""

from __future__ import annotations

import abc
import contextlib
import io
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from prometheus_lib.errors import SchemaMismatchError, WarehouseError
from prometheus_lib.storage.catalog import ColumnType, Table, get_table

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_COPY_CHUNK_ROWS = 250_000


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: rows replaced and rows written, for asset metadata."""

    table: str
    rows_deleted: int
    rows_written: int
    start: date | None = None
    end: date | None = None


def _check_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise WarehouseError(f"invalid SQL identifier {name!r}")
    return name


def conform(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    """Return ``frame`` with exactly ``table``'s columns, in order, cast to the catalogue types.

    Raises
    ------
    SchemaMismatchError
        If columns are missing or extra, a non-nullable column has nulls, or a cast fails.
    """
    missing = [c for c in table.column_names if c not in frame.columns]
    extra = [c for c in frame.columns if c not in table.column_names]
    if missing or extra:
        raise SchemaMismatchError(
            f"frame for {table.qualified_name} does not match the table: "
            f"missing columns {missing}, unexpected columns {extra}"
        )
    try:
        out = frame.select([pl.col(c.name).cast(c.polars_type, strict=True) for c in table.columns])
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as e:
        raise SchemaMismatchError(f"frame for {table.qualified_name}: column cannot be cast: {e}") from None
    nulls = out.select([pl.col(c.name).null_count() for c in table.columns if not c.nullable or c.name in table.primary_key])
    bad = {k: v for k, v in nulls.row(0, named=True).items() if v} if nulls.width else {}
    if bad:
        raise SchemaMismatchError(f"frame for {table.qualified_name}: nulls in non-nullable columns {bad}")
    return out


def _check_partition(table: Table, frame: pl.DataFrame, start: date | None, end: date | None, scope: Mapping[str, Any]) -> None:
    """Refuse rows that fall outside the partition being replaced (they would break idempotency)."""
    if frame.is_empty():
        return
    if table.partition_column is not None and start is not None and end is not None:
        col = pl.col(table.partition_column)
        outside = frame.filter((col < start) | (col > end))
        if outside.height:
            first = outside.row(0, named=True)
            raise WarehouseError(
                f"{outside.height} rows for {table.qualified_name} fall outside the partition "
                f"{start}..{end}; first: {table.partition_column}={first[table.partition_column]}"
            )
    for col, value in scope.items():
        wrong = frame.filter(pl.col(col) != value)
        if wrong.height:
            raise WarehouseError(
                f"{wrong.height} rows for {table.qualified_name} have {col} != {value!r} "
                f"(scope of this write); first: {wrong.row(0, named=True)[col]!r}"
            )
    dup = frame.select(table.primary_key).is_duplicated()
    if dup.any():
        key = frame.filter(dup).select(table.primary_key).row(0, named=True)
        raise WarehouseError(
            f"{int(dup.sum())} rows for {table.qualified_name} repeat a primary key "
            f"{table.primary_key}; first: {key}"
        )


def _where(
    table: Table, start: date | None, end: date | None, scope: Mapping[str, Any], placeholder: str,
    include_undated: bool = True,
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if start is not None or end is not None:
        if table.partition_column is None:
            raise WarehouseError(f"{table.qualified_name} is not partitioned: start/end do not apply")
        col = table.partition_column
        window, wparams = [], []
        if start is not None:
            window.append(f"{col} >= {placeholder}")
            wparams.append(start)
        if end is not None:
            window.append(f"{col} <= {placeholder}")
            wparams.append(end)
        cond = " AND ".join(window)
        # Rows whose session is unknown (a quarantined row with an unparseable date) belong to
        # every partition of their scope: a partition write re-reports and replaces them.
        if table.column(col).nullable and include_undated:
            cond = f"(({cond}) OR {col} IS NULL)"
        clauses.append(cond)
        params.extend(wparams)
    for col, value in scope.items():
        table.column(col)  # raises on an unknown column
        if isinstance(value, (list, tuple, frozenset, set)):  # one of several values
            values = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
            if not values:
                raise WarehouseError(f"scope {col!r} of {table.qualified_name} is an empty list of values")
            clauses.append(f"{_check_ident(col)} IN ({', '.join([placeholder] * len(values))})")
            params.extend(values)
            continue
        clauses.append(f"{_check_ident(col)} = {placeholder}")
        params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class Warehouse(abc.ABC):
    """The warehouse interface shared by both backends.

    Use as a context manager or call :meth:`close`.
    """

    dialect: str

    # ---------------------------------------------------------------- backend primitives
    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement (inside the current transaction if one is open)."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """Run a query and return its result as a polars frame."""

    @abc.abstractmethod
    def _bulk_insert(self, table: Table, frame: pl.DataFrame) -> None:
        """Append ``frame`` (already conformed) to ``table`` inside the open transaction."""

    @abc.abstractmethod
    def _read(self, table: Table, where: str, params: list[Any], columns: Sequence[str]) -> pl.DataFrame:
        """Read rows of ``table`` matching ``where``."""

    @abc.abstractmethod
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Open a transaction: commit on success, roll back on any exception."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the warehouse lives, for people (a path or a URL without password)."""

    placeholder = "?"

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- schema
    def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied now."""
        from prometheus_lib.storage.migrations import apply_migrations

        return apply_migrations(self)

    def table_exists(self, table: str) -> bool:
        """Return whether catalogue table ``table`` exists in the database."""
        t = get_table(table)
        df = self.query(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = "
            f"{self.placeholder} AND table_name = {self.placeholder}",
            [t.schema, t.name],
        )
        return bool(df["n"][0])

    def columns_of(self, table: str) -> list[str]:
        """Return the column names of ``table`` as the database has them, in order."""
        t = get_table(table)
        df = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            f"{self.placeholder} AND table_name = {self.placeholder} ORDER BY ordinal_position",
            [t.schema, t.name],
        )
        return df["column_name"].to_list()

    # ---------------------------------------------------------------- writes
    def write_partition(
        self,
        table: str,
        frame: pl.DataFrame,
        start: date,
        end: date,
        scope: Mapping[str, Any] | None = None,
        *,
        evict_on: Sequence[str] = (),
        then: Callable[[Warehouse], Any] | None = None,
    ) -> WriteResult:
        """Replace the partition ``[start, end]`` (narrowed by ``scope``) of ``table`` with ``frame``.

        One transaction: delete the partition's rows, bulk-load ``frame``. Every row of
        ``frame`` must fall inside the partition.

        Parameters
        ----------
        table
            Catalogue table name.
        frame
            Rows with exactly the table's columns.
        start, end
            First and last session of the partition (inclusive).
        scope
            Values of the table's scope columns this write owns (for example
            ``{"market_id": "US_EQ"}``); rows of other scopes are untouched.
        evict_on
            Columns identifying a row wherever it is dated (for quarantine rows: asset, file,
            line). Rows of the scope outside the partition that match a row of ``frame`` on
            them are deleted too: a row that moved to another partition does not stay behind
            in the old one (where it would also clash with a key that omits the date).
        then
            Called with this warehouse inside the transaction, after the load (tidying rows
            that depend on the replaced ones, in the same commit).

        Raises
        ------
        SchemaMismatchError
            If the frame's columns or types do not match the table.
        WarehouseError
            If rows fall outside the partition or repeat a primary key, or the database fails.
        """
        t = get_table(table)
        if t.partition_column is None:
            raise WarehouseError(f"{t.qualified_name} is not session-partitioned; use replace_table")
        if end < start:
            raise WarehouseError(f"partition end {end} is before start {start} for {t.qualified_name}")
        scope = dict(scope or {})
        data = conform(t, frame)
        _check_partition(t, data, start, end, scope)
        return self._replace(t, data, start, end, scope, tuple(evict_on), then)

    def replace_table(self, table: str, frame: pl.DataFrame, scope: Mapping[str, Any] | None = None) -> WriteResult:
        """Replace every row of ``table`` (or of its ``scope``) with ``frame`` in one transaction."""
        t = get_table(table)
        scope = dict(scope or {})
        data = conform(t, frame)
        _check_partition(t, data, None, None, scope)
        return self._replace(t, data, None, None, scope)

    def upsert_rows(self, table: str, frame: pl.DataFrame) -> WriteResult:
        """Insert ``frame``'s rows, replacing the rows with the same primary key, in one transaction.

        For small registry tables (``engine_configs``, ``models``) that many writers add to.
        """
        t = get_table(table)
        data = conform(t, frame)
        key = t.primary_key
        if data.select(key).is_duplicated().any():
            raise WarehouseError(f"upsert into {t.qualified_name}: the frame repeats a primary key {list(key)}")
        deleted = 0
        try:
            with self.transaction():
                for row in data.select(key).iter_rows():
                    where = " WHERE " + " AND ".join(f"{_check_ident(c)} = {self.placeholder}" for c in key)
                    n = self._count(t, where, list(row))
                    if n:
                        self.execute(f"DELETE FROM {t.qualified_name}{where}", list(row))
                        deleted += n
                if data.height:
                    self._bulk_insert(t, data)
        except WarehouseError:
            raise
        except Exception as e:
            raise WarehouseError(f"writing {t.qualified_name} failed and was rolled back: {e}") from e
        self._after_write(t)
        return WriteResult(t.name, deleted, data.height, None, None)

    def _replace(self, t: Table, data: pl.DataFrame, start: date | None, end: date | None, scope: dict[str, Any],
                 evict_on: tuple[str, ...] = (), then: Callable[[Warehouse], Any] | None = None) -> WriteResult:
        where, params = _where(t, start, end, scope, self.placeholder)
        try:
            with self.transaction():
                deleted = self._count(t, where, params)
                self.execute(f"DELETE FROM {t.qualified_name}{where}", params)
                if evict_on and data.height:
                    deleted += self._evict(t, data, scope, evict_on)
                if data.height:
                    self._bulk_insert(t, data)
                if then is not None:
                    then(self)
                self._before_commit(t)
        except WarehouseError:
            raise
        except Exception as e:  # a database error: the transaction was rolled back
            raise WarehouseError(f"writing {t.qualified_name} failed and was rolled back: {e}") from e
        self._after_write(t)
        return WriteResult(t.name, deleted, data.height, start, end)

    def _evict(self, t: Table, data: pl.DataFrame, scope: dict[str, Any], columns: tuple[str, ...]) -> int:
        """Delete rows of ``scope`` matching a row of ``data`` on ``columns`` (inside the open transaction)."""
        *fixed, last = [_check_ident(t.column(c).name) for c in columns]
        keys = data.select(columns).unique()
        groups = (keys.group_by(fixed, maintain_order=True).agg(pl.col(last)) if fixed
                  else pl.DataFrame({last: [keys[last].to_list()]}))
        evicted = 0
        for group in groups.iter_rows(named=True):
            values = group[last]
            for i in range(0, len(values), 500):
                chunk = values[i:i + 500]
                where, params = _where(t, None, None, {**scope, **{c: group[c] for c in fixed}}, self.placeholder)
                where += f" AND {last} IN ({', '.join([self.placeholder] * len(chunk))})"
                params += chunk
                n = self._count(t, where, params)
                if n:
                    self.execute(f"DELETE FROM {t.qualified_name}{where}", params)
                    evicted += n
        return evicted

    def _after_write(self, table: Table) -> None:
        """Hook run after a committed write (PostgreSQL refreshes planner statistics)."""

    def _before_commit(self, table: Table) -> None:
        """Hook run inside the write transaction just before commit (crash tests patch it)."""

    def _count(self, t: Table, where: str, params: list[Any]) -> int:
        return int(self.query(f"SELECT count(*) AS n FROM {t.qualified_name}{where}", params)["n"][0])

    # ---------------------------------------------------------------- reads
    def read_table(
        self,
        table: str,
        start: date | None = None,
        end: date | None = None,
        scope: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        order_by: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Return rows of ``table`` (optionally a session range and scope) with catalogue types.

        Rows come in primary-key order, or ``order_by`` (column names) when given. A scope value
        that is a list or tuple selects rows with any of its values.
        """
        t = get_table(table)
        cols = list(columns) if columns else list(t.column_names)
        for c in (*cols, *(order_by or ())):
            t.column(c)
        where, params = _where(t, start, end, dict(scope or {}), self.placeholder)
        order = ", ".join(_check_ident(c) for c in (order_by or t.primary_key))
        df = self._read(t, f"{where} ORDER BY {order}", params, cols)
        return df.select([pl.col(c).cast(t.column(c).polars_type) for c in cols])

    def row_count(self, table: str, start: date | None = None, end: date | None = None, scope: Mapping[str, Any] | None = None) -> int:
        """Return the number of rows of ``table`` (optionally in a session range and scope)."""
        t = get_table(table)
        where, params = _where(t, start, end, dict(scope or {}), self.placeholder)
        return self._count(t, where, params)


# ==================================================================== DuckDB
class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: one DuckDB file.

    Parameters
    ----------
    path
        Database file; its folder is created. ``":memory:"`` for a throwaway database.
    threads, memory_limit
        Optional DuckDB settings.
    lock_wait
        Seconds to wait for another process holding the file (None: ``PROMETHEUS_LOCK_WAIT``,
        default 0).

    DuckDB admits one writing process per file. Opening takes the warehouse lock
    (:mod:`prometheus_lib.storage.lock`; re-entrant, so free inside a command or run that holds
    it) and ``close`` gives it back; a file held by another process, ours or not, raises
    :class:`~prometheus_lib.errors.WarehouseLockedError` naming it, never DuckDB's IO Error.
    """

    dialect = "duckdb"

    def __init__(self, path: str | Path, threads: int | None = None, memory_limit: str | None = None,
                 lock_wait: float | None = None) -> None:
        import duckdb

        from prometheus_lib.storage import lock

        self._path = str(path)
        self._locked = False
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            lock.acquire(self._path, wait=lock_wait)
            self._locked = True
        try:
            self._con = self._connect(duckdb, lock.lock_wait_seconds() if lock_wait is None else lock_wait)
        except BaseException:
            self._release_lock()
            raise
        self._con.execute("SET TimeZone = 'UTC'").complete()
        if threads:
            self._con.execute(f"SET threads = {int(threads)}").complete()
        if memory_limit:
            self._con.execute("SET memory_limit = ?", [memory_limit]).complete()
        self._depth = 0

    def _connect(self, duckdb: Any, wait: float) -> Any:
        """Connect, waiting up to ``wait`` s for a process outside the warehouse lock (say a DuckDB shell)."""
        from prometheus_lib.storage import lock

        t0 = time.monotonic()
        while True:
            try:
                return duckdb.connect(self._path)
            except duckdb.IOException as e:
                if not lock.is_duckdb_lock_error(e):
                    raise WarehouseError(f"cannot open DuckDB warehouse {self._path}: {e}") from e
                waited = time.monotonic() - t0
                if waited >= wait:
                    # from None: the one-line error is the whole story (no DuckDB IO Error as its cause)
                    raise lock.locked_error(self._path, waited if wait > 0 else 0.0, str(e)) from None
                time.sleep(0.2)

    def _release_lock(self) -> None:
        if self._locked:
            from prometheus_lib.storage import lock

            self._locked = False
            lock.release(self._path)

    @property
    def location(self) -> str:
        return self._path

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._con.execute(sql, list(params)).complete()

    def query(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        return self._con.sql(sql, params=list(params) or None).pl()

    def _bulk_insert(self, table: Table, frame: pl.DataFrame) -> None:
        name = f"_incoming_{table.name}"
        self._con.register(name, frame.to_arrow())
        try:
            cols = ", ".join(table.column_names)
            self._con.execute(f"INSERT INTO {table.qualified_name} ({cols}) SELECT {cols} FROM {name}").complete()
        finally:
            self._con.unregister(name)

    def _read(self, table: Table, where: str, params: list[Any], columns: Sequence[str]) -> pl.DataFrame:
        sel = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" if table.column(c).type is ColumnType.JSON else c for c in columns)
        return self.query(f"SELECT {sel} FROM {table.qualified_name}{where}", params)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._con.begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._con.rollback()
            raise
        self._depth = 0
        self._con.commit()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._con.close()
        self._release_lock()

    def __del__(self) -> None:
        # A warehouse dropped without close() must not keep the file locked for the process's life.
        if getattr(self, "_locked", False):
            with contextlib.suppress(Exception):
                self.close()


# ==================================================================== PostgreSQL
def _pg_array_literal(expr: pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit("{"), expr.list.eval(pl.element().cast(pl.String)).list.join(","), pl.lit("}")])


class PostgresWarehouse(Warehouse):
    """The PostgreSQL warehouse, reached through psycopg 3.

    Parameters
    ----------
    url
        A libpq connection string: a URL, for example
        ``postgresql://postgres@127.0.0.1:5432/prometheus``, or a key=value DSN. Its password
        never reaches :attr:`location` or an error message (``prometheus_lib.security``).
    """

    dialect = "postgres"
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        import psycopg

        from prometheus_lib.security import redact_error

        self._url = url
        try:
            self._con = psycopg.connect(url, autocommit=True)
        except psycopg.Error as e:
            # libpq's message can echo the connection string (or pieces of a misparsed password):
            # only its redacted text travels, and not the driver's exception (from None).
            raise WarehouseError(f"cannot connect to PostgreSQL warehouse {self.location}: "
                                 f"{redact_error(e, url)}") from None
        self._con.execute("SET TIME ZONE 'UTC'")
        self._tx: Any = None

    @property
    def location(self) -> str:
        """The connection string with its password (every form of it) replaced by ``***``."""
        from prometheus_lib.security import redact_dsn

        return redact_dsn(self._url)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._con.execute(sql, list(params) or None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        with self._con.cursor() as cur:
            cur.execute(sql, list(params) or None)
            if cur.description is None:
                return pl.DataFrame()
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
        if not rows:
            return pl.DataFrame(schema={n: pl.String for n in names})
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

    def _bulk_insert(self, table: Table, frame: pl.DataFrame) -> None:
        exprs = []
        for c in table.columns:
            if c.type is ColumnType.FLOAT_ARRAY:
                exprs.append(_pg_array_literal(pl.col(c.name)).alias(c.name))
            else:
                exprs.append(pl.col(c.name))
        out = frame.select(exprs)
        cols = ", ".join(table.column_names)
        # Every non-numeric value is quoted and NULL is the unquoted empty field, so no string
        # (not "", not "\N", not "\.") can be mistaken for NULL or for the end-of-data marker.
        sql = f"COPY {table.qualified_name} ({cols}) FROM STDIN (FORMAT csv, NULL '')"
        with self._con.cursor() as cur, cur.copy(sql) as copy:
            for offset in range(0, out.height, _COPY_CHUNK_ROWS):
                buf = io.BytesIO()
                out.slice(offset, _COPY_CHUNK_ROWS).write_csv(
                    buf, include_header=False, null_value="", quote_style="non_numeric",
                    datetime_format="%Y-%m-%dT%H:%M:%S%.6f%:z", date_format="%Y-%m-%d",
                )
                copy.write(buf.getvalue())

    def _after_write(self, table: Table) -> None:
        # Without statistics the planner assumes a freshly loaded table is tiny and picks nested
        # loops: the dbt panels then run 30x slower. ANALYZE samples a fixed number of rows.
        self._con.execute(f"ANALYZE {table.qualified_name}")

    def _read(self, table: Table, where: str, params: list[Any], columns: Sequence[str]) -> pl.DataFrame:
        import psycopg

        sel = ", ".join(columns)
        inner = psycopg.ClientCursor(self._con).mogrify(f"SELECT {sel} FROM {table.qualified_name}{where}", params or None)
        buf = io.BytesIO()
        # FORCE_QUOTE quotes every non-NULL value, so the unquoted empty field is NULL and a
        # quoted "" is the empty string (polars reads them that way).
        copy_sql = f"COPY ({inner}) TO STDOUT (FORMAT csv, HEADER true, NULL '', FORCE_QUOTE *)"
        with self._con.cursor() as cur, cur.copy(copy_sql) as copy:
            for block in copy:
                buf.write(block)
        raw = {c: pl.String for c in columns}
        df = pl.read_csv(buf.getvalue(), schema_overrides=raw, infer_schema=False) if buf.tell() else pl.DataFrame(schema=raw)
        exprs = []
        for c in columns:
            col = table.column(c)
            e = pl.col(c)
            if col.type is ColumnType.FLOAT_ARRAY:
                e = e.str.strip_chars("{}").str.split(",").list.eval(pl.element().cast(pl.Float64))
            elif col.type is ColumnType.BOOLEAN:
                e = e.replace_strict({"t": True, "f": False}, return_dtype=pl.Boolean)
            elif col.type is ColumnType.TIMESTAMP:
                e = e.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%#z", time_zone="UTC", time_unit="us")
            elif col.type is ColumnType.DATE:
                e = e.str.to_date("%Y-%m-%d")
            else:
                e = e.cast(col.polars_type)
            exprs.append(e.alias(c))
        return df.select(exprs)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._tx is not None:
            yield
            return
        with self._con.transaction() as tx:
            self._tx = tx
            try:
                yield
            finally:
                self._tx = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._con.close()
