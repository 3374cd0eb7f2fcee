"""Ingestion benchmark: the synthetic market, 500 instruments x 10 years, into DuckDB and PostgreSQL.

    .venv/bin/python bench/ingest.py [--instruments 500] [--years 10] [--pg-url URL] [--skip-peer]

Prints, per backend: generation seconds, write seconds (one atomic partition write of the
whole range, Arrow into DuckDB / COPY into PostgreSQL), rows/s, and a re-write (idempotent
replace of the same range). For scale, a peer loader is timed side by side on a sample: a
row-by-row ``executemany`` INSERT (what a naive loader does), reporting the ratio.
Goals on the 2-core machine: < 30 s into DuckDB, < 60 s into PostgreSQL.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg

from prometheus_lib.calendars import TradingCalendar
from prometheus_lib.data.ingestion import ingest_prices
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig
from prometheus_lib.storage.factory import open_warehouse


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _peer_rows_per_s(wh_kwargs: dict, frame) -> float:
    """Rows/s of a row-by-row executemany INSERT of a sample (the naive peer)."""
    sample = frame.head(20_000)
    wh = open_warehouse(**wh_kwargs)
    try:
        cols = ", ".join(sample.columns)
        ph = ", ".join([wh.placeholder] * sample.width)
        rows = sample.rows()
        t0 = time.perf_counter()
        with wh.transaction():
            wh.execute(f"DELETE FROM historical.prices_daily WHERE market_id = {wh.placeholder}", ["PEER"])
            if wh.dialect == "postgres":
                with wh._con.cursor() as cur:  # noqa: SLF001 - the peer needs the raw cursor
                    cur.executemany(f"INSERT INTO historical.prices_daily ({cols}) VALUES ({ph})",
                                    [(r[0] + "_P", *r[1:2], "PEER", *r[3:]) for r in rows])
            else:
                wh._con.executemany(f"INSERT INTO historical.prices_daily ({cols}) VALUES ({ph})",  # noqa: SLF001
                                    [(r[0] + "_P", *r[1:2], "PEER", *r[3:]) for r in rows])
            elapsed = time.perf_counter() - t0
            raise _Rollback
    except _Rollback:
        pass
    finally:
        wh.close()
    return len(rows) / elapsed


class _Rollback(Exception):
    pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instruments", type=int, default=500)
    p.add_argument("--years", type=int, default=10)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--skip-peer", action="store_true")
    args = p.parse_args()

    cal = TradingCalendar("XNYS")
    end = cal.previous_session(cal.last_session - timedelta(days=400))
    sessions = cal.sessions(end - timedelta(days=round(365.25 * args.years)), end)
    config = SyntheticMarketConfig(n_instruments=args.instruments, history_start=sessions[0])
    market = SyntheticMarket(config, cal)
    batch, gen_s = _timed(lambda: ingest_prices(market, sessions))
    frame = batch.prices
    n = frame.height
    print(f"synthetic market: {args.instruments} instruments x {len(sessions)} sessions "
          f"({sessions[0]}..{sessions[-1]}) = {n:,} price rows, generated in {gen_s:.2f} s")

    admin = args.pg_url
    dbname = f"prom_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{dbname}"')
    pg_url = admin.rsplit("/", 1)[0] + f"/{dbname}"
    tmp = tempfile.mkdtemp(prefix="prom_bench_")
    targets = {
        "duckdb": ({"backend": "duckdb", "duckdb_path": str(Path(tmp) / "bench.duckdb")}, 30.0),
        "postgres": ({"backend": "postgres", "postgres_url": pg_url}, 60.0),
    }
    try:
        print(f"\n{'backend':<10}{'write s':>9}{'rows/s':>12}{'rewrite s':>11}{'gen+write s':>13}{'goal s':>8}  "
              f"{'peer rows/s':>12}{'ratio':>8}")
        for name, (kwargs, goal) in targets.items():
            wh = open_warehouse(**kwargs)
            try:
                _, write_s = _timed(lambda: wh.write_partition("prices_daily", frame, sessions[0], sessions[-1], {"market_id": "US_EQ"}))
                _, rewrite_s = _timed(lambda: wh.write_partition("prices_daily", frame, sessions[0], sessions[-1], {"market_id": "US_EQ"}))
                assert wh.row_count("prices_daily") == n, "rewrite must replace, not append"
            finally:
                wh.close()
            peer = float("nan") if args.skip_peer else _peer_rows_per_s(kwargs, frame)
            total = gen_s + write_s
            verdict = "ok" if total < goal else "OVER"
            print(f"{name:<10}{write_s:>9.2f}{n / write_s:>12,.0f}{rewrite_s:>11.2f}{total:>13.2f}{goal:>8.0f}  "
                  f"{peer:>12,.0f}{(n / write_s) / peer:>8.1f}x  {verdict}")
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
